"""EmbeddingModule: the length-grouped step, optimizer groups, schedule and fault handling."""

from __future__ import annotations

import pytest
import torch

from st_lightning import EmbeddingModule, losses
from st_lightning.data.collate import Batch
from st_lightning.encoders import tiny_encoder

TEXTS = [f"sentence {i} " + "word " * (i * 3 % 17) for i in range(20)]


def batch(encoder, columns=2, labels=None):
    features = [encoder.tokenize(TEXTS[c:] + TEXTS[:c]) for c in range(columns)]
    return Batch("d", features, labels)


def grads(module):
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("loss", [losses.MultipleNegativesRankingLoss(), losses.CoSENTLoss()])
def test_length_grouped_step_equals_padded_step(loss):
    encoder = tiny_encoder(dropout=0.0, seed=4)
    labels = torch.linspace(0, 1, 20) if isinstance(loss, losses.CoSENTLoss) else None
    b = batch(encoder, labels=labels)
    results = []
    for group in (None, 4):
        module = EmbeddingModule(encoder, {"d": loss}, length_group_size=group)
        module.zero_grad()
        embeddings = [module.encode_column(f) for f in b.features]
        value = loss(embeddings, b.labels)
        value.backward()
        results.append((value.detach(), grads(module)))
    (plain, plain_grads), (grouped, grouped_grads) = results
    torch.testing.assert_close(grouped, plain, rtol=1e-5, atol=1e-6)
    for name, g in plain_grads.items():
        assert (grouped_grads[name] - g).norm() <= 1e-4 * g.norm() + 1e-8, name


def test_grouping_really_removes_padding():
    encoder = tiny_encoder()
    module = EmbeddingModule(encoder, losses.CoSENTLoss(), length_group_size=4)
    widths = []
    original = encoder.forward
    encoder.forward = lambda f: (widths.append(f["input_ids"].shape[1]), original(f))[1]
    module.encode_column(batch(encoder).features[0])
    assert len(widths) == 5 and widths == sorted(widths, reverse=True) and widths[-1] < widths[0]


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


def test_non_finite_loss_names_the_dataset(monkeypatch):
    module = EmbeddingModule(tiny_encoder(), {"d": losses.CoSENTLoss()})
    monkeypatch.setattr(EmbeddingModule, "current_epoch", 0)
    monkeypatch.setattr(EmbeddingModule, "global_step", 7)
    with pytest.raises(FloatingPointError, match="dataset 'd', batch 3"):
        module.finite(torch.tensor(float("nan")), batch(module.encoder), 3)
    assert module.finite(torch.tensor(1.0), batch(module.encoder), 3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="lr"):
        EmbeddingModule(tiny_encoder(), losses.CoSENTLoss(), lr=0)
    with pytest.raises(ValueError, match="scheduler"):
        EmbeddingModule(tiny_encoder(), losses.CoSENTLoss(), scheduler="step")
    with pytest.raises(KeyError, match="No loss for dataset 'x'"):
        EmbeddingModule(tiny_encoder(), {"d": losses.CoSENTLoss()}).loss_for("x")
