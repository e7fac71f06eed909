"""EmbeddingModule: optimizer groups, schedule and fault handling."""

from __future__ import annotations

import pytest
import torch

from st_lightning import EmbeddingModule, losses
from st_lightning.data.collate import Batch
from st_lightning.encoders import tiny_encoder
from st_lightning.optim import fusable


def batch(encoder):
    texts = [f"sentence {i}" for i in range(4)]
    return Batch("d", [encoder.tokenize(texts), encoder.tokenize(texts[::-1])], None)


def test_parameter_groups_and_multipliers():
    module = EmbeddingModule(
        tiny_encoder(),
        {"d": losses.SoftmaxLoss(32, 3)},
        lr=1e-3,
        weight_decay=0.1,
        lr_multipliers={"losses": 10.0},
    )
    groups = {(g["weight_decay"], g["lr"]): g["params"] for g in module.parameter_groups()}
    names = {id(p): n for n, p in module.named_parameters()}
    assert set(groups) == {(0.1, 1e-3), (0.0, 1e-3), (0.1, 1e-2), (0.0, 1e-2)}
    assert all("bias" in names[id(p)] or "LayerNorm" in names[id(p)] for p in groups[(0.0, 1e-3)])
    assert {names[id(p)] for p in groups[(0.1, 1e-2)]} == {"losses.d.classifier.weight"}


class FakeTrainer:
    estimated_stepping_batches = 100
    precision = "32-true"
    gradient_clip_val = None


def test_fused_adamw_on_cpu_steps_like_the_default(monkeypatch):
    monkeypatch.setattr(EmbeddingModule, "trainer", FakeTrainer())
    steps = []
    for fused in (True, False):
        module = EmbeddingModule(tiny_encoder(seed=2), losses.CoSENTLoss(), lr=1e-2)
        optimizer = module.configure_optimizers()["optimizer"]
        assert optimizer.defaults["fused"] is True  # float32 on CPU takes the fused kernel
        optimizer.defaults["fused"] = fused
        for g in optimizer.param_groups:
            g["fused"] = fused
        for p in module.parameters():
            p.grad = torch.full_like(p, 0.5) * torch.arange(p.numel()).reshape(p.shape) / p.numel()
        optimizer.step()
        steps.append(torch.cat([p.detach().flatten() for p in module.parameters()]))
    torch.testing.assert_close(steps[0], steps[1], rtol=1e-6, atol=1e-7)
    double = [{"params": [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))]}]
    assert not fusable(double)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
def test_schedules(schedule, monkeypatch):
    module = EmbeddingModule(
        tiny_encoder(), losses.CoSENTLoss(), lr=1.0, warmup_ratio=0.1, scheduler=schedule
    )
    monkeypatch.setattr(EmbeddingModule, "trainer", FakeTrainer())
    scheduler = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    factors = [f(step) for f in scheduler.lr_lambdas[:1] for step in (0, 9, 10, 55, 99)]
    assert factors[0] < factors[1] < 1.0 and factors[2] == 1.0
    if schedule == "constant":
        assert factors[3:] == [1.0, 1.0]
    else:
        assert factors[4] < 0.05 and 0.3 < factors[3] < 0.7
    if schedule == "linear":  # transformers' get_linear_schedule_with_warmup, by hand
        assert factors == pytest.approx([0.0, 0.9, 1.0, 45 / 90, 1 / 90])


def test_non_finite_loss_names_the_dataset(monkeypatch):
    module = EmbeddingModule(tiny_encoder(), {"d": losses.CoSENTLoss()})
    monkeypatch.setattr(EmbeddingModule, "current_epoch", 0)
    monkeypatch.setattr(EmbeddingModule, "global_step", 7)
    logged = {}
    monkeypatch.setattr(
        module, "log", lambda key, value, **kw: logged.__setitem__(key, float(value))
    )
    nan = torch.tensor(float("nan"))
    with pytest.raises(FloatingPointError, match="dataset 'd', batch 3"):
        module.agree_and_log(batch(module.encoder), 3, nan, nan)
    assert not logged
    parts = {"a": torch.tensor(1.0), "b": torch.tensor(0.5)}
    assert module.agree_and_log(batch(module.encoder), 3, parts, torch.tensor(1.5))
    assert logged == {
        "train/loss": 1.5,
        "train/loss/d": 1.5,
        "train/loss/d/a": 1.0,
        "train/loss/d/b": 0.5,
    }


def test_bad_arguments():
    with pytest.raises(ValueError, match="lr"):
        EmbeddingModule(tiny_encoder(), losses.CoSENTLoss(), lr=0)
    with pytest.raises(ValueError, match="scheduler"):
        EmbeddingModule(tiny_encoder(), losses.CoSENTLoss(), scheduler="step")
    with pytest.raises(KeyError, match="No loss for dataset 'x'"):
        EmbeddingModule(tiny_encoder(), {"d": losses.CoSENTLoss()}).loss_for("x")


class ClipTrainer(FakeTrainer):
    precision = "bf16-mixed"
    gradient_clip_val = 1.0


def test_clipping_works_with_the_fused_optimizer_under_bf16(monkeypatch):
    """Lightning refuses to clip for a fused optimizer under mixed precision; under bf16
    nothing is scaled, so the module clips itself."""
    monkeypatch.setattr(EmbeddingModule, "trainer", ClipTrainer())
    module = EmbeddingModule(tiny_encoder(seed=2), losses.CoSENTLoss())
    optimizer = module.configure_optimizers()["optimizer"]
    assert optimizer.defaults["fused"] is True
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for p in params:
        p.grad = torch.full_like(p, 3.0)
    module.configure_gradient_clipping(optimizer, 1.0, "norm")
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
    assert norm == pytest.approx(1.0, rel=1e-3)
    module.configure_gradient_clipping(optimizer, 0.01, "value")
    assert max(float(p.grad.abs().max()) for p in params) <= 0.01 + 1e-9


def test_fp16_scaling_with_clipping_does_not_fuse(monkeypatch):
    class Fp16(ClipTrainer):
        precision = "16-mixed"

    monkeypatch.setattr(EmbeddingModule, "trainer", Fp16())
    module = EmbeddingModule(tiny_encoder(seed=2), losses.CoSENTLoss())
    assert module.configure_optimizers()["optimizer"].defaults["fused"] is False
