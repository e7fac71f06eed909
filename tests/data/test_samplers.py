"""Batch samplers: counts, determinism, sharding, no duplicates, labels, mixing, resume."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from st_lightning.data import (
    BatchSampler,
    GroupByLabelBatchSampler,
    NoDuplicatesBatchSampler,
    ProportionalSampler,
    RoundRobinSampler,
    WeightedSampler,
)


def flat(batches):
    return [r for b in batches for r in b]


def test_default_uses_every_row_once_and_is_deterministic():
    s = BatchSampler(103, 10, seed=1)
    batches = list(s)
    assert len(batches) == len(s) == 11 and len(batches[-1]) == 3
    assert sorted(flat(batches)) == list(range(103))
    assert list(BatchSampler(103, 10, seed=1)) == batches
    s.set_epoch(1)
    assert list(s) != batches and sorted(flat(s)) == list(range(103))
    assert len(list(BatchSampler(103, 10, seed=1, drop_last=True))) == 10


@pytest.mark.parametrize("cls", [BatchSampler, NoDuplicatesBatchSampler, GroupByLabelBatchSampler])
def test_ranks_are_disjoint_equal_and_cover_all_full_global_batches(cls):
    keys = [(i % 50, 1000 + i) for i in range(203)]
    labels = [i % 7 for i in range(203)]
    shards = [cls(203, 8, seed=3, rank=r, world_size=3, keys=keys, labels=labels) for r in range(3)]
    batches = [list(s) for s in shards]
    assert len({len(b) for b in batches}) == 1  # same number of steps everywhere
    assert all(len(b) == 8 for rank in batches for b in rank)  # and the same batch sizes
    rows = [set(flat(b)) for b in batches]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])
    assert 203 - len(set().union(*rows)) < 3 * 8 + (8 if cls is GroupByLabelBatchSampler else 0)


def test_no_duplicates_within_a_global_batch():
    rng = np.random.default_rng(0)
    # Many repeated texts: 500 rows drawn from 120 distinct anchors and 300 positives.
    keys = [(int(rng.integers(120)), 10_000 + int(rng.integers(300))) for _ in range(500)]
    s = NoDuplicatesBatchSampler(500, 16, seed=0, keys=keys)
    batches = list(s)
    assert len(batches) == len(s)
    assert sorted(flat(batches)) == list(range(500))  # every row still used once
    for batch in batches:
        texts = [t for row in batch for t in keys[row]]
        assert len(texts) == len(set(texts))
    assert sum(len(b) == 16 for b in batches) >= len(batches) - 3


def test_no_duplicates_handles_rows_that_all_repeat():
    keys = [("same",)] * 5 + [(f"u{i}",) for i in range(5)]
    batches = list(NoDuplicatesBatchSampler(10, 4, keys=keys))
    assert sorted(flat(batches)) == list(range(10))
    for batch in batches:
        assert sum(keys[r] == ("same",) for r in batch) <= 1


def test_group_by_label_batches_hold_pairs_of_labels():
    labels = [i % 5 for i in range(100)]
    for batch in GroupByLabelBatchSampler(100, 8, labels=labels, samples_per_label=2):
        counts = collections.Counter(labels[r] for r in batch)
        assert all(c >= 2 for c in counts.values())


def two_datasets(sampler_cls, rank=0, world_size=1, **kwargs):
    samplers = {
        "big": BatchSampler(100, 10, seed=5, rank=rank, world_size=world_size),
        "small": BatchSampler(30, 10, seed=5, rank=rank, world_size=world_size),
    }
    return sampler_cls(samplers, {"big": 0, "small": 100}, seed=5, **kwargs)


def dataset_of(batch):
    return "big" if batch[0] < 100 else "small"


def test_round_robin_alternates_and_stops_at_the_smallest():
    names = [dataset_of(b) for b in two_datasets(RoundRobinSampler)]
    assert names == ["big", "small"] * 3


def test_proportional_uses_every_row_once():
    batches = list(two_datasets(ProportionalSampler))
    assert sorted(flat(batches)) == list(range(130))
    assert all(len({dataset_of([r]) for r in b}) == 1 for b in batches)  # one dataset per batch
    names = [dataset_of(b) for b in batches]
    assert names.count("big") == 10 and names.count("small") == 3


def test_weighted_mixing_follows_the_weights():
    sampler = two_datasets(
        WeightedSampler, weights={"big": 1.0, "small": 3.0}, steps_per_epoch=4000
    )
    names = [dataset_of(b) for b in sampler]
    assert abs(names.count("small") / 4000 - 0.75) < 0.03
    # "small" has 3 batches but is drawn ~3000 times: it starts over in new orders.
    small = [
        tuple(b)
        for b in two_datasets(WeightedSampler, weights={"big": 1, "small": 3})
        if b[0] >= 100
    ]
    assert len(small) > 3 and len(set(small)) > 3


def test_temperature_mixing():
    sampler = two_datasets(WeightedSampler, temperature=2.0)
    expected = np.array([100**0.5, 30**0.5])
    np.testing.assert_allclose(sampler.probabilities(), expected / expected.sum())
    with pytest.raises(ValueError, match="exactly one"):
        two_datasets(WeightedSampler)
    with pytest.raises(ValueError, match="name each dataset"):
        two_datasets(WeightedSampler, weights={"big": 1.0})


@pytest.mark.parametrize("cls", [ProportionalSampler, RoundRobinSampler])
def test_all_ranks_draw_the_same_dataset_at_each_step(cls):
    per_rank = [[dataset_of(b) for b in two_datasets(cls, rank=r, world_size=2)] for r in range(2)]
    assert per_rank[0] == per_rank[1] and len(per_rank[0]) > 0


def test_weighted_same_dataset_on_all_ranks():
    runs = [
        [
            dataset_of(b)
            for b in two_datasets(WeightedSampler, rank=r, world_size=2, temperature=1.0)
        ]
        for r in range(2)
    ]
    assert runs[0] == runs[1]


def test_resume_mid_epoch_gives_the_remaining_batches():
    full = two_datasets(ProportionalSampler)
    full.set_epoch(2)
    expected = list(full)
    interrupted = two_datasets(ProportionalSampler)
    interrupted.set_epoch(2)
    it = iter(interrupted)
    seen = [next(it) for _ in range(5)]
    state = interrupted.state_dict()
    resumed = two_datasets(ProportionalSampler)
    resumed.load_state_dict(state)
    assert len(resumed) == len(expected)  # the epoch's length, as Lightning counts it
    remaining = list(resumed)
    assert len(remaining) == len(expected) - 5 and seen + remaining == expected
    resumed.set_epoch(3)
    assert len(list(resumed)) == len(expected)


def test_resume_with_another_seed_is_refused():
    state = two_datasets(ProportionalSampler).state_dict()
    other = RoundRobinSampler({"a": BatchSampler(10, 2)}, {"a": 0}, seed=99)
    with pytest.raises(ValueError, match="same seed"):
        other.load_state_dict(state)


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        BatchSampler(10, 0)
    with pytest.raises(ValueError, match="rank 2"):
        BatchSampler(10, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="samples_per_label"):
        GroupByLabelBatchSampler(10, 2, labels=[0] * 10, samples_per_label=1)
