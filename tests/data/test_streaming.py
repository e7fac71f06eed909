"""Streamed training data: sharding between ranks and workers, mixing, no-duplicates batches
from a bounded buffer, exact resume, the first rows checked before training, bad input."""

from __future__ import annotations

import json
from collections import Counter
from functools import partial

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import DATA

from st_lightning import losses
from st_lightning.data import (
    BatchSampler,
    DatasetSpec,
    EmbeddingDataModule,
    GroupByLabelBatchSampler,
    NoDuplicatesBatchSampler,
    RoundRobinSampler,
    WeightedSampler,
)


def write_shards(folder, name: str, shards: int, rows: int, repeat: int = 1) -> str:
    """`shards` parquet files of `rows` (anchor, positive) rows each; every row is unique, and
    each anchor text appears `repeat` times. Returns the glob of the shards."""
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        ids = [f"{name}-{s}-{i}" for i in range(rows)]
        table = pa.table(
            {
                "anchor": [f"{name} anchor {s} {i // repeat}" for i in range(rows)],
                "positive": [f"{i} positive" for i in ids],
            }
        )
        pq.write_table(table, folder / f"{name}-{s:03d}.parquet", row_group_size=7)
    return str(folder / f"{name}-*.parquet")


def streaming(tiny, datasets, rank=0, world_size=1, **kwargs) -> EmbeddingDataModule:
    settings = dict(batch_size=4, shuffle_buffer=8, seed=3, with_texts=True)
    dm = EmbeddingDataModule(datasets, tokenizer=tiny.tokenizer, **{**settings, **kwargs})
    dm.world = lambda: (rank, world_size)  # type: ignore[method-assign]
    dm.setup()
    return dm


def take(dm: EmbeddingDataModule, steps: int, loader=None) -> list:
    """The first `steps` batches as the training loop takes them (positions noted)."""
    batches = []
    for batch in loader or dm.train_dataloader():
        batches.append(dm.on_before_batch_transfer(batch, 0))
        if len(batches) == steps:
            break
    return batches


def rows_of(batch) -> list[tuple[str, str]]:
    return list(zip(*batch.texts, strict=True))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_two_ranks_see_disjoint_rows_whose_union_is_the_data_once(tiny, tmp_path, num_workers):
    shards = write_shards(tmp_path, "d", shards=4, rows=24)
    spec = DatasetSpec(shards, streaming=True)
    seen = {}
    for rank in (0, 1):
        dm = streaming(tiny, {"d": spec}, rank, 2, num_workers=num_workers)
        # 96 rows, 48 per rank in batches of 4: one pass is 12 batches.
        seen[rank] = [r for b in take(dm, 12) for r in rows_of(b)]
    assert len(seen[0]) == len(set(seen[0])) == len(seen[1]) == 48
    assert not set(seen[0]) & set(seen[1])
    everything = pq.ParquetDataset(sorted(tmp_path.glob("d-*.parquet"))).read().to_pylist()
    assert set(seen[0]) | set(seen[1]) == {(r["anchor"], r["positive"]) for r in everything}


def test_every_rank_draws_the_same_dataset_at_every_step(tiny, tmp_path):
    # A small and a large dataset mixed by weight: the small one starts new passes while the
    # large one goes on; both ranks, with 2 workers each, agree on the dataset of each step.
    small = DatasetSpec(write_shards(tmp_path, "small", 2, 8), streaming=True)
    large = DatasetSpec(write_shards(tmp_path, "large", 4, 40), streaming=True)
    sampler = partial(WeightedSampler, weights={"small": 1.0, "large": 1.0})
    names = {}
    for rank in (0, 1):
        dm = streaming(
            tiny, {"small": small, "large": large}, rank, 2, num_workers=2,
            multi_dataset_sampler=sampler,
        )  # fmt: skip
        batches = take(dm, 40)
        names[rank] = [b.dataset for b in batches]
        assert all(b.size == 4 for b in batches)
    assert names[0] == names[1]
    assert 10 < names[0].count("small") < 30  # both datasets are drawn


def test_mixing_follows_weights_temperature_and_round_robin(tiny, tmp_path):
    a = DatasetSpec(write_shards(tmp_path, "a", 1, 30), streaming=True)
    b = DatasetSpec(write_shards(tmp_path, "b", 1, 270), streaming=True)
    data = {"a": a, "b": b}

    def shares(sampler, steps=600):
        dm = streaming(tiny, data, multi_dataset_sampler=sampler)
        counts = Counter(batch.dataset for batch in take(dm, steps))
        return counts["a"] / steps

    assert shares(partial(WeightedSampler, weights={"a": 3.0, "b": 1.0})) == pytest.approx(
        0.75, abs=0.05
    )
    # Temperature 1 mixes by size (the parquet metadata tells the sizes): 30 / 300.
    assert shares(partial(WeightedSampler, temperature=1.0)) == pytest.approx(0.1, abs=0.03)
    # Temperature 2: sqrt(30) / (sqrt(30) + sqrt(270)) = 0.25.
    assert shares(partial(WeightedSampler, temperature=2.0)) == pytest.approx(0.25, abs=0.05)
    assert shares(RoundRobinSampler, steps=10) == 0.5


def test_no_duplicates_batches_from_a_bounded_buffer(tiny, tmp_path):
    # Each anchor text appears 4 times; with a buffer of 32 rows, batches of 8 never repeat
    # a text, and every row is served once before any row is served twice.
    spec = DatasetSpec(write_shards(tmp_path, "dup", 2, 64, repeat=4), streaming=True)
    dm = streaming(
        tiny, {"dup": spec}, batch_size=8, shuffle_buffer=32,
        batch_sampler=NoDuplicatesBatchSampler,
    )  # fmt: skip
    batches = take(dm, 30)
    for batch in batches:
        texts = [t for column in batch.texts for t in column]
        assert len(texts) == len(set(texts))
    served = [r for b in batches for r in rows_of(b)]
    first_repeat = next(i for i, r in enumerate(served) if r in served[:i])
    assert first_repeat >= 128 - 32  # a pass (128 rows), less what the buffer holds back
    assert len(set(served[: 128 + 32])) == 128  # and then every row has come


def test_plain_batches_repeat_texts_the_buffer_would_separate(tiny, tmp_path):
    # The control for the test above: without no-duplicates, the same data repeats texts.
    spec = DatasetSpec(write_shards(tmp_path, "dup", 2, 64, repeat=4), streaming=True)
    dm = streaming(tiny, {"dup": spec}, batch_size=8, shuffle_buffer=32)
    repeats = sum(len(set(b.texts[0])) < 8 for b in take(dm, 16))
    assert repeats > 0


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("stop_at", [5, 7])
def test_resumed_stream_continues_with_the_batches_it_had_left(
    tiny, tmp_path, num_workers, stop_at
):
    small = DatasetSpec(write_shards(tmp_path, "small", 2, 10), streaming=True)
    large = DatasetSpec(write_shards(tmp_path, "large", 2, 30), streaming=True)
    data = {"small": small, "large": large}
    settings = dict(
        num_workers=num_workers,
        batch_sampler=NoDuplicatesBatchSampler,
        multi_dataset_sampler=partial(WeightedSampler, temperature=1.0),
    )
    whole = take(streaming(tiny, data, **settings), 24)
    first = streaming(tiny, data, **settings)
    take(first, stop_at)  # the workers have read further ahead than this
    state = first.state_dict()
    assert state["position"] == stop_at
    resumed = streaming(tiny, data, **settings)
    resumed.load_state_dict(state)
    rest = take(resumed, 24 - stop_at)
    for a, b in zip(whole[stop_at:], rest, strict=True):
        assert (a.dataset, a.texts) == (b.dataset, b.texts)
        assert torch.equal(a.features[0]["input_ids"], b.features[0]["input_ids"])


def test_a_checkpoint_of_other_readers_is_refused(tiny, tmp_path):
    spec = {"d": DatasetSpec(write_shards(tmp_path, "d", 2, 20), streaming=True)}
    first = streaming(tiny, spec, num_workers=2)
    take(first, 3)
    other = streaming(tiny, spec, num_workers=1)
    other.load_state_dict(first.state_dict())
    with pytest.raises(ValueError, match=r"1 rank\(s\) x 2 reader.*this run has 1 x 1"):
        other.train_dataloader()


def test_streamed_and_in_memory_batches_hold_the_same_rows(tiny):
    # The bundled NLI triplets, streamed: the same column roles, tokenization and padding as
    # the in-memory path; over a pass, the same rows.
    spec = DatasetSpec(str(DATA / "all-nli"), "triplet", "dev", max_samples=64)
    memory = EmbeddingDataModule({"nli": spec}, tokenizer=tiny.tokenizer, batch_size=8)
    memory.setup()
    streamed = streaming(
        tiny, {"nli": DatasetSpec(**{**vars(spec), "streaming": True})}, batch_size=8
    )
    stream = streamed.streams["nli"]
    assert stream.inputs == memory.tokenized["nli"].inputs == ("anchor", "positive", "negative")
    assert stream.num_rows == 64  # max_samples of a split whose size the dataset info tells
    batches = take(streamed, 8)
    rows = {r for b in batches for r in zip(*b.texts, strict=True)}
    data = memory.tokenized["nli"].data
    assert rows == set(zip(data["anchor"], data["positive"], data["negative"], strict=True))
    one = batches[0]
    direct = tiny.tokenize(one.texts[1])
    assert torch.equal(one.features[1]["input_ids"], direct["input_ids"])
    assert torch.equal(one.features[1]["attention_mask"], direct["attention_mask"])


def test_jsonl_shards_stream_with_labels_and_their_size(tiny, tmp_path):
    for s in range(2):
        with open(tmp_path / f"part-{s}.jsonl", "w") as f:
            for i in range(12):
                f.write(json.dumps({"s1": f"a {s} {i}", "s2": f"b {s} {i}", "score": i / 12}))
                f.write("\n")
    dm = streaming(tiny, {"sts": DatasetSpec(str(tmp_path / "part-*.jsonl"), streaming=True)})
    dm.check_losses({"sts": losses.CoSENTLoss()}, 32)
    assert dm.streams["sts"].num_rows == 24
    batch = take(dm, 1)[0]
    expected = [int(t.split()[-1]) / 12 for t in batch.texts[0]]  # each row's own score
    assert batch.labels.tolist() == pytest.approx(expected)


# ---- bad input: clear errors before training ------------------------------------------------
def test_first_rows_that_break_the_column_rules_fail_before_training(tiny, tmp_path):
    path = tmp_path / "bad.jsonl"
    rows = [{"anchor": "a", "positive": ""}] + [
        {"anchor": f"a{i}", "positive": "p"} for i in range(9)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"'nli' has 1 row\(s\) with an empty or missing text"):
        streaming(tiny, {"nli": DatasetSpec(str(path), streaming=True)})
    # One text column cannot feed MNRL: the loss check names the columns.
    path.write_text("".join(json.dumps({"anchor": f"a{i}"}) + "\n" for i in range(9)))
    dm = streaming(tiny, {"nli": DatasetSpec(str(path), streaming=True)})
    with pytest.raises(ValueError, match="anchor"):
        dm.check_losses({"nli": losses.MultipleNegativesRankingLoss()})


def test_a_bad_row_deep_in_the_stream_names_the_dataset(tiny, tmp_path):
    path = tmp_path / "late.jsonl"
    rows = [{"anchor": f"a{i}", "positive": f"p{i}"} for i in range(300)]
    rows[290]["positive"] = None
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dm = streaming(tiny, {"late": DatasetSpec(str(path), streaming=True)}, shuffle_buffer=100)
    with pytest.raises(ValueError, match=r"'late' streams 1 row\(s\) with an empty or missing"):
        take(dm, 100)
    skipping = streaming(
        tiny, {"late": DatasetSpec(str(path), streaming=True)}, shuffle_buffer=100,
        on_invalid="skip",
    )  # fmt: skip
    # 299 valid rows: 74 batches and 3 rows carried into the next pass; 80 batches hold all.
    served = {r for b in take(skipping, 80) for r in rows_of(b)}
    assert len(served) == 299


def test_an_empty_shard_list_is_refused(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="no file matches .*the shard list is empty"):
        streaming(tiny, {"d": DatasetSpec(str(tmp_path / "*.parquet"), streaming=True)})
    spec = DatasetSpec("json", streaming=True, load_kwargs={"data_files": []})
    with pytest.raises(ValueError, match="data_files is empty"):
        streaming(tiny, {"d": spec})


@pytest.mark.parametrize(
    "settings,match",
    [
        (dict(batch_sampler=partial(GroupByLabelBatchSampler, samples_per_label=2)),
         "GroupByLabelBatchSampler cannot batch streamed data"),
        (dict(multi_dataset_sampler=partial(WeightedSampler, temperature=1.0,
                                            steps_per_epoch=10)),
         "steps_per_epoch has no meaning for streaming"),
    ],
)  # fmt: skip
def test_a_sampler_streaming_cannot_honour_is_refused(tiny, tmp_path, settings, match):
    spec = DatasetSpec(write_shards(tmp_path, "d", 1, 10), streaming=True)
    with pytest.raises(ValueError, match=match):
        streaming(tiny, {"d": spec, "e": spec}, **settings)


def test_mixing_by_size_needs_known_sizes(tiny, tmp_path):
    path = tmp_path / "rows.jsonl.gz"
    import gzip

    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps({"a": f"x{i}", "b": f"y{i}"}) + "\n" for i in range(10))
    spec = DatasetSpec(str(path), streaming=True)
    with pytest.raises(ValueError, match=r"no known number of rows.*give num_rows"):
        streaming(tiny, {"d": spec, "e": spec})  # proportional mixing, sizes unknown
    sized = DatasetSpec(str(path), streaming=True, num_rows=10)
    assert streaming(tiny, {"d": sized, "e": sized}).schedule is not None


def test_a_plain_batch_sampler_batches_streams_without_the_repeat_check(tiny, tmp_path):
    spec = DatasetSpec(write_shards(tmp_path, "d", 1, 10), streaming=True)
    dm = streaming(tiny, {"d": spec}, batch_sampler=BatchSampler)
    assert dm.no_duplicates is False
    assert [b.size for b in take(dm, 2)] == [4, 4]


def test_a_hub_id_streams_only_online_and_says_so(tiny):
    # Hub ids go to the same reader (load_dataset(..., streaming=True)); offline, the error says
    # the Hub is off instead of failing inside the first step.
    spec = DatasetSpec("sentence-transformers/all-nli", "triplet", streaming=True)
    with pytest.raises(FileNotFoundError, match=r"cannot stream .*offline \(HF_HUB_OFFLINE=1\)"):
        streaming(tiny, {"nli": spec})
