"""BatchEmbedder: length groups and the unpadded merge compute what one forward per column does."""

from __future__ import annotations

import pytest
import torch

from st_lightning import EmbeddingModule, losses
from st_lightning.data.collate import Batch
from st_lightning.encoders import tiny_encoder
from st_lightning.encoders.batch import BatchEmbedder
from st_lightning.encoders.unpadded import group_sizes

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
        encoder.unpadded = unpadded
        encoder.zero_grad()
        value = loss(BatchEmbedder(encoder, budget)(b.features), b.labels)
        value.backward()
        results.append((value.detach(), grads(encoder)))
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
    encoder = tiny_encoder(unpadded=False)
    embedder = BatchEmbedder(encoder, 40)
    calls = recorded_forwards(encoder)
    features = batch(encoder).features[0]
    embedder([features])
    widths = [w for _, w in calls]
    assert sum(r for r, _ in calls) == 20 and widths == sorted(widths, reverse=True)
    assert all(r * w <= 40 or r == 1 for r, w in calls)
    assert sum(r * w for r, w in calls) < features["input_ids"].numel() * 0.8


def test_columns_are_grouped_together_unless_their_prompts_differ():
    encoder = tiny_encoder(dropout=0.0, unpadded=False)
    embedder = BatchEmbedder(encoder, 64)
    columns = [encoder.tokenize(TEXTS), encoder.tokenize([t[:12] for t in TEXTS])]
    calls = recorded_forwards(encoder)
    grouped = embedder(columns)
    lengths = sorted((int(n) for f in columns for n in f["attention_mask"].sum(1)), reverse=True)
    assert [r for r, _ in calls] == group_sizes(lengths, 64)  # one sorted pass over 40 rows
    assert [w for _, w in calls] == sorted((w for _, w in calls), reverse=True)
    # A column whose prompt is left out of pooling gets its own forwards.
    encoder.pooling.include_prompt = False
    columns[1] = encoder.tokenize([t[:12] for t in TEXTS], prompt="query: ")
    calls.clear()
    separate = embedder(columns)
    per_column = [sorted(f["attention_mask"].sum(1).tolist(), reverse=True) for f in columns]
    assert [r for r, _ in calls] == [n for ls in per_column for n in group_sizes(ls, 64)]
    del encoder.forward
    for got, features in zip([*grouped[:1], *separate], [columns[0], *columns], strict=True):
        torch.testing.assert_close(got, encoder(features), rtol=1e-5, atol=1e-6)


def test_token_counts_follow_the_grouping():
    encoder = tiny_encoder()
    columns = [encoder.tokenize(["a b c d e f", "a", "a b"]), encoder.tokenize(["a b c", "a"])]
    # With [CLS]/[SEP]: lengths 8, 3, 4 and 5, 3; 23 real tokens.
    assert BatchEmbedder(encoder, 10).token_counts(columns) == (23, 23)  # real tokens only
    encoder.unpadded = False
    assert BatchEmbedder(encoder, None).token_counts(columns) == (23, 3 * 8 + 2 * 5)
    grouped = BatchEmbedder(encoder, 10)
    # Sorted 8 | 5 4 | 3 3 -> 8 + 2 * 5 + 2 * 3.
    assert grouped.token_counts(columns) == (23, 24)
    assert grouped.token_counts(columns, [[8, 3, 4], [5, 3]]) == (23, 24)  # host lengths
    calls = recorded_forwards(encoder)
    grouped(columns)
    assert sum(r * w for r, w in calls) == 24


def test_unpadded_runs_all_columns_in_one_forward():
    encoder = tiny_encoder(dropout=0.0)
    embedder = BatchEmbedder(encoder, 16)
    columns = [encoder.tokenize(TEXTS), encoder.tokenize([t[:12] for t in TEXTS])]
    calls = recorded_forwards(encoder)
    merged = embedder(columns)
    assert calls == [(40, columns[0]["input_ids"].shape[1])]  # one forward, 40 rows
    del encoder.forward
    encoder.unpadded = False
    for got, features in zip(merged, columns, strict=True):
        torch.testing.assert_close(got, encoder(features), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [0, -5, "fast", 2.5, True])
def test_bad_group_budget_is_refused(bad):
    with pytest.raises(ValueError, match="length_group_tokens"):
        BatchEmbedder(tiny_encoder(), bad)


def test_the_module_embeds_with_its_embedder_and_the_monitor_counts_with_it():
    encoder = tiny_encoder(unpadded=False)
    module = EmbeddingModule(encoder, losses.CoSENTLoss(), length_group_tokens=10)
    assert module.embedder.encoder is module.encoder and module.embedder.group_tokens == 10
