"""Property-based tests (hypothesis) for the column rules and the samplers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from st_lightning.data import (
    BatchSampler,
    NoDuplicatesBatchSampler,
    ProportionalSampler,
    column_roles,
)
from st_lightning.data.columns import LABEL_COLUMNS, RESERVED_COLUMNS

names = st.lists(
    st.sampled_from(
        ["anchor", "positive", "negative", "text", "query", "score", "label", "q2", "doc"]
    ),
    min_size=1,
    max_size=5,
    unique=True,
)


@given(names)
def test_column_rules(columns):
    labels = [c for c in columns if c in LABEL_COLUMNS]
    inputs = [c for c in columns if c not in LABEL_COLUMNS]
    try:
        roles = column_roles("d", columns)
    except ValueError as err:
        assert len(labels) > 1 or not inputs or set(columns) & set(RESERVED_COLUMNS), err
        return
    assert list(roles.inputs) == inputs  # order kept
    assert roles.label == (labels[0] if labels else None)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 300),
    batch=st.integers(1, 32),
    world=st.integers(1, 4),
    seed=st.integers(0, 10),
    epoch=st.integers(0, 3),
)
def test_sharded_batches_are_disjoint_and_equal(rows, batch, world, seed, epoch):
    shards = [BatchSampler(rows, batch, seed=seed, rank=r, world_size=world) for r in range(world)]
    for s in shards:
        s.set_epoch(epoch)
    per_rank = [list(s) for s in shards]
    assert len({len(b) for b in per_rank}) == 1
    used = [r for b in per_rank for batch_rows in b for r in batch_rows]
    assert len(used) == len(set(used)) and all(0 <= r < rows for r in used)
    if world == 1:
        assert sorted(used) == list(range(rows))
    else:
        assert all(len(b) == batch for rank in per_rank for b in rank)
        assert rows - len(used) < batch * world


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 40)), min_size=1, max_size=150),
    batch=st.integers(1, 16),
)
def test_no_duplicates_property(keys, batch):
    batches = list(NoDuplicatesBatchSampler(len(keys), batch, keys=keys))
    assert sorted(r for b in batches for r in b) == list(range(len(keys)))
    for b in batches:
        texts = [t for r in b for t in set(keys[r])]
        assert len(texts) == len(set(texts)) and len(b) <= batch


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 60), min_size=1, max_size=4),
    batch=st.integers(1, 8),
    stop=st.integers(0, 30),
)
def test_proportional_resume_property(sizes, batch, stop):
    def build():
        samplers, offsets, total = {}, {}, 0
        for i, n in enumerate(sizes):
            samplers[f"d{i}"] = BatchSampler(n, batch, seed=1)
            offsets[f"d{i}"] = total
            total += n
        return ProportionalSampler(samplers, offsets, seed=1)

    full = list(build())
    assert sorted(r for b in full for r in b) == list(range(sum(sizes)))
    first = build()
    it = iter(first)
    head = [next(it) for _ in range(min(stop, len(full)))]
    resumed = build()
    resumed.load_state_dict(first.state_dict())
    assert head + list(resumed) == full
