"""EmbeddingModule: the length-grouped step, optimizer groups, schedule and fault handling."""

from __future__ import annotations

import pytest
import torch

from st_lightning import EmbeddingModule, losses
from st_lightning.data.collate import Batch
from st_lightning.encoders import tiny_encoder
from st_lightning.encoders.unpadded import group_sizes
from st_lightning.module import fusable

TEXTS = [f"sentence {i} " + "word " * (i * 3 % 17) for i in range(20)]


def batch(encoder, columns=2, labels=None):
    features = [encoder.tokenize(TEXTS[c:] + TEXTS[:c]) for c in range(columns)]
    return Batch("d", features, labels)


def grads(module):
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "loss,columns",
    [(losses.MultipleNegativesRankingLoss(), 3), (losses.CoSENTLoss(), 2)],
)
def test_length_grouped_step_equals_padded_step(loss, columns):
    encoder = tiny_encoder(dropout=0.0, seed=4)
    labels = torch.linspace(0, 1, 20) if isinstance(loss, losses.CoSENTLoss) else None
    b = batch(encoder, columns, labels=labels)
    b.features[0] = encoder.tokenize(["short"] * 5 + TEXTS[5:])  # columns of unequal widths
    results = []
    # (unpadded, length_group_tokens): the backbone's own padded forward per column first.
    for unpadded, budget in [(False, None), (False, 40), (True, 40), (True, None)]:
        module = EmbeddingModule(
            encoder, {"d": loss}, length_group_tokens=budget, unpadded=unpadded
        )
        module.zero_grad()
        embeddings, _ = module.embed(b, loss)
        value = loss(embeddings, b.labels)
        value.backward()
        results.append((value.detach(), grads(module)))
    (plain, plain_grads), *others = results
    scale = torch.sqrt(sum(g.norm() ** 2 for g in plain_grads.values()))
    for value, other_grads in others:
        torch.testing.assert_close(value, plain, rtol=1e-5, atol=1e-6)
        for name, g in plain_grads.items():
            assert (other_grads[name] - g).norm() <= 1e-5 * scale, name


def recorded_forwards(encoder):
    """Patch `encoder.forward` to record the (rows, width) of every call."""
    calls: list[tuple[int, int]] = []
    original = encoder.forward
    encoder.forward = lambda f: (calls.append(tuple(f["input_ids"].shape)), original(f))[1]
    return calls


def test_group_sizes_fill_the_token_budget():
    assert group_sizes([8, 5, 4, 3, 3], 10) == [1, 2, 2]
    assert group_sizes([30, 2, 2], 10) == [1, 2]  # a row longer than the budget goes alone
    assert group_sizes([4] * 7, 16) == [4, 3]
    assert group_sizes([], 16) == []


def test_grouping_really_removes_padding():
    encoder = tiny_encoder()
    module = EmbeddingModule(encoder, losses.CoSENTLoss(), length_group_tokens=40, unpadded=False)
    calls = recorded_forwards(encoder)
    features = batch(encoder).features[0]
    module.encode_column(features)
    widths = [w for _, w in calls]
    assert sum(r for r, _ in calls) == 20 and widths == sorted(widths, reverse=True)
    assert all(r * w <= 40 or r == 1 for r, w in calls)
    assert sum(r * w for r, w in calls) < features["input_ids"].numel() * 0.8


def test_columns_are_grouped_together_unless_their_prompts_differ():
    encoder = tiny_encoder(dropout=0.0)
    module = EmbeddingModule(encoder, losses.CoSENTLoss(), length_group_tokens=64, unpadded=False)
    columns = [encoder.tokenize(TEXTS), encoder.tokenize([t[:12] for t in TEXTS])]
    calls = recorded_forwards(encoder)
    grouped = module.encode_columns(columns)
    lengths = sorted((int(n) for f in columns for n in f["attention_mask"].sum(1)), reverse=True)
    assert [r for r, _ in calls] == group_sizes(lengths, 64)  # one sorted pass over 40 rows
    assert [w for _, w in calls] == sorted((w for _, w in calls), reverse=True)
    # A column whose prompt is left out of pooling gets its own forwards.
    encoder.pooling.include_prompt = False
    columns[1] = encoder.tokenize([t[:12] for t in TEXTS], prompt="query: ")
    calls.clear()
    separate = module.encode_columns(columns)
    per_column = [sorted(f["attention_mask"].sum(1).tolist(), reverse=True) for f in columns]
    assert [r for r, _ in calls] == [n for ls in per_column for n in group_sizes(ls, 64)]
    del encoder.forward
    for got, features in zip([*grouped[:1], *separate], [columns[0], *columns], strict=True):
        torch.testing.assert_close(got, encoder(features), rtol=1e-5, atol=1e-6)


def test_token_counts_follow_the_grouping():
    encoder = tiny_encoder()
    columns = [encoder.tokenize(["a b c d e f", "a", "a b"]), encoder.tokenize(["a b c", "a"])]
    # With [CLS]/[SEP]: lengths 8, 3, 4 and 5, 3; 23 real tokens.
    plain = EmbeddingModule(encoder, losses.CoSENTLoss(), length_group_tokens=None, unpadded=False)
    assert plain.token_counts(columns) == (23, 3 * 8 + 2 * 5)
    unpadded = EmbeddingModule(encoder, losses.CoSENTLoss(), length_group_tokens=10)
    assert unpadded.token_counts(columns) == (23, 23)  # the dense layers see real tokens only
    grouped = EmbeddingModule(encoder, losses.CoSENTLoss(), length_group_tokens=10, unpadded=False)
    # Sorted 8 | 5 4 | 3 3 -> 8 + 2 * 5 + 2 * 3.
    assert grouped.token_counts(columns) == (23, 24)
    calls = recorded_forwards(encoder)
    grouped.encode_columns(columns)
    assert sum(r * w for r, w in calls) == 24


def test_unpadded_runs_all_columns_in_one_forward():
    encoder = tiny_encoder(dropout=0.0)
    module = EmbeddingModule(encoder, losses.CoSENTLoss(), length_group_tokens=16)
    columns = [encoder.tokenize(TEXTS), encoder.tokenize([t[:12] for t in TEXTS])]
    calls = recorded_forwards(encoder)
    merged = module.encode_columns(columns)
    assert calls == [(40, columns[0]["input_ids"].shape[1])]  # one forward, 40 rows
    del encoder.forward
    encoder.unpadded = False
    for got, features in zip(merged, columns, strict=True):
        torch.testing.assert_close(got, encoder(features), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [0, -5, "fast", 2.5])
def test_bad_group_budget_is_refused(bad):
    with pytest.raises(ValueError, match="length_group_tokens"):
        EmbeddingModule(tiny_encoder(), losses.CoSENTLoss(), length_group_tokens=bad)


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
