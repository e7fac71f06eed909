"""EmbeddingDataModule: sources, column rules, tokenize-once, prompts, bad input."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from conftest import DATA
from datasets import Dataset, DatasetDict

from st_lightning import losses
from st_lightning.data import (
    DatasetSpec,
    EmbeddingDataModule,
    NoDuplicatesBatchSampler,
    RoundRobinSampler,
    column_roles,
    load_source,
)

NLI = DatasetSpec(str(DATA / "all-nli"), "triplet", "train[:64]")
STS = DatasetSpec(str(DATA / "stsb"), None, "train[:40]")


def module(datasets, tiny, **kwargs):
    return EmbeddingDataModule(datasets, tokenizer=tiny.tokenizer, batch_size=8, **kwargs)


def test_batches_come_from_one_dataset_and_pick_its_columns(tiny):
    dm = module({"nli": NLI, "sts": STS}, tiny, max_seq_length=32)
    dm.setup()
    dm.check_losses({"nli": losses.MultipleNegativesRankingLoss(), "sts": losses.CoSENTLoss()}, 32)
    batches = list(dm.train_dataloader())
    assert len(batches) == 8 + 5
    for b in batches:
        assert len(b.features) == (3 if b.dataset == "nli" else 2)
        assert b.features[0]["input_ids"].shape[1] <= 32
        assert (b.labels is None) == (b.dataset == "nli")
        if b.labels is not None:
            assert b.labels.dtype == torch.float64 or b.labels.dtype == torch.float32
    # Padding is per batch and per column, with a real attention mask.
    f = batches[0].features[0]
    assert f["attention_mask"].sum(1).max() == f["input_ids"].shape[1]
    assert (f["input_ids"][f["attention_mask"] == 0] == tiny.tokenizer.pad_token_id).all()


def test_batches_embed_like_tokenize(tiny):
    rows = Dataset.from_dict({"a": ["one two", "three"], "b": ["four", "five six seven"]})
    dm = EmbeddingDataModule({"d": rows}, tokenizer=tiny.tokenizer, batch_size=2, seed=0)
    batch = next(iter(dm.train_dataloader()))
    order = [rows["a"].index(t) for t in batch.texts[0]] if batch.texts else None
    assert order is None  # texts are only carried when asked
    direct = tiny.tokenize(rows["a"])
    got = batch.features[0]
    # Same ids as the encoder's own tokenization, up to the row order of the shuffled batch.
    assert sorted(map(tuple, got["input_ids"].tolist())) == sorted(
        map(tuple, direct["input_ids"].tolist())
    )


def count_tokenizer_calls(tokenizer, monkeypatch) -> dict[str, int]:
    """Count calls of the tokenizer's class from now on (in this test)."""
    calls = {"n": 0}
    original = type(tokenizer).__call__

    def counting(self, *args, **kwargs):
        calls["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), "__call__", counting)
    return calls


def test_tokenizes_once_across_epochs(tiny, monkeypatch):
    calls = count_tokenizer_calls(tiny.tokenizer, monkeypatch)
    rows = load_source(NLI, "nli").to_dict()
    dm = module({"nli": Dataset.from_dict(rows)}, tiny)  # in memory: no disk cache to hit
    dm.setup()
    after_setup = calls["n"]
    assert after_setup > 0
    loader = dm.train_dataloader()
    for epoch in range(2):
        dm.sampler.set_epoch(epoch)
        assert len(list(loader)) == 8
    assert calls["n"] == after_setup


def test_tokenization_of_files_is_cached_on_disk(tiny, monkeypatch, tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps({"a": f"text {i}", "b": f"other {i}"}) for i in range(20)))
    module({"d": DatasetSpec(str(path))}, tiny).setup()
    calls = count_tokenizer_calls(tiny.tokenizer, monkeypatch)
    module({"d": DatasetSpec(str(path))}, tiny).setup()
    assert calls["n"] == 0  # a second run reads the tokenized cache


def test_sources_files_and_memory(tmp_path, tiny):
    rows = [{"q": f"question {i}", "a": f"answer {i}", "score": i / 10} for i in range(10)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "d.csv").write_text(
        "q,a,score\n" + "\n".join(f"{r['q']},{r['a']},{r['score']}" for r in rows)
    )
    Dataset.from_list(rows).to_parquet(tmp_path / "d.parquet")
    for name in ("d.jsonl", "d.csv", "d.parquet"):
        ds = load_source(DatasetSpec(str(tmp_path / name), split="train[:4]"), "x")
        assert ds.column_names == ["q", "a", "score"] and len(ds) == 4
    spec = DatasetSpec(
        str(tmp_path / "d.jsonl"), columns=["a", "q"], max_samples=3, shuffle=True, seed=1
    )
    ds = load_source(spec, "x")
    assert ds.column_names == ["a", "q"] and len(ds) == 3
    renamed = load_source(DatasetSpec(str(tmp_path / "d.jsonl"), rename={"score": "label"}), "x")
    assert column_roles("x", renamed.column_names).label == "label"
    assert len(load_source(Dataset.from_list(rows), "mem")) == 10
    with pytest.raises(TypeError, match="DatasetDict"):
        load_source(DatasetDict({"train": Dataset.from_list(rows)}), "dd")


def test_column_rules():
    roles = column_roles("d", ["premise", "hypothesis", "label"])
    assert roles.inputs == ("premise", "hypothesis") and roles.label == "label"
    assert column_roles("d", ["scores", "s1", "s2"]).inputs == ("s1", "s2")
    with pytest.raises(ValueError, match="reserved"):
        column_roles("d", ["a", "dataset_name"])
    with pytest.raises(ValueError, match="several label columns"):
        column_roles("d", ["a", "b", "label", "score"])


def test_id_like_columns_warn(caplog):
    with caplog.at_level(logging.WARNING):
        column_roles("quora", ["qid1", "question1", "question2", "pair_id"])
    assert "look like ids" in caplog.text and "qid1" in caplog.text and "pair_id" in caplog.text


def test_prompts_per_dataset_and_column(tiny):
    data = {
        "a": Dataset.from_dict({"q": ["x y"], "d": ["z"]}),
        "b": Dataset.from_dict({"q": ["x y"], "d": ["z"]}),
    }
    dm = EmbeddingDataModule(
        data,
        tiny.tokenizer,
        batch_size=1,
        prompts={"a": {"q": "query: "}, "b": "doc: "},
        eval_datasets={"a": data["a"]},
    )
    dm.setup()
    plain = len(tiny.tokenizer("x y")["input_ids"])
    # An eval dataset takes the prompts of the training dataset whose name it has.
    assert (
        dm.eval_tokenized["a"].data["__input_ids_0"][0]
        == dm.tokenized["a"].data["__input_ids_0"][0]
    )
    a_ids = dm.tokenized["a"].data["__input_ids_0"][0]
    b_ids = dm.tokenized["b"].data["__input_ids_1"][0]
    assert len(a_ids) == plain + 2  # "query" ":"
    assert dm.tokenized["a"].prompt_lengths == (3, 0) and dm.tokenized["b"].prompt_lengths == (3, 3)
    assert tiny.tokenizer.decode(b_ids, skip_special_tokens=True) == "doc : z"


def test_no_duplicates_sampler_through_the_module(tiny):
    rows = Dataset.from_dict(
        {"a": ["same"] * 6 + [f"u{i}" for i in range(10)], "p": [f"p{i}" for i in range(16)]}
    )
    dm = EmbeddingDataModule(
        {"d": rows}, tiny.tokenizer, batch_size=4, batch_sampler=NoDuplicatesBatchSampler
    )
    for batch in dm.train_dataloader():
        anchors = [tuple(r) for r in batch.features[0]["input_ids"].tolist()]
        assert len(anchors) == len(set(anchors))


def test_seven_datasets_three_losses(tiny):
    """The seeds' multi-dataset example, with bundled stand-ins for the Hub datasets."""
    nli = str(DATA / "all-nli")
    queries = {
        json.loads(line)["_id"]: json.loads(line)["text"]
        for line in (DATA / "scifact/queries.jsonl").open()
    }
    import gzip

    with gzip.open(DATA / "scifact/corpus.jsonl.gz", "rt") as f:
        corpus = {d["_id"]: d["text"] for d in map(json.loads, f)}
    qrels = [
        line.split("\t") for line in (DATA / "scifact/qrels/train.tsv").read_text().splitlines()[1:]
    ]
    natural_questions = Dataset.from_dict(
        {
            "query": [queries[q] for q, _, _ in qrels[:40]],
            "answer": [corpus[d] for _, d, _ in qrels[:40]],
        }
    )
    train = {
        "all-nli-pair": DatasetSpec(nli, "pair", "train[:40]"),
        "all-nli-pair-class": DatasetSpec(nli, "pair-class", "train[:40]"),
        "all-nli-pair-score": DatasetSpec(nli, "pair-score", "train[:40]"),
        "all-nli-triplet": DatasetSpec(nli, "triplet", "train[:40]"),
        "stsb": DatasetSpec(str(DATA / "stsb"), None, "train[:40]"),
        "quora": DatasetSpec(str(DATA / "quora-duplicates"), "pair", "train[:40]"),
        "natural-questions": natural_questions,
    }
    mnrl, cosent = losses.MultipleNegativesRankingLoss(), losses.CoSENTLoss()
    loss_dict = {
        "all-nli-pair": mnrl,
        "all-nli-pair-class": losses.SoftmaxLoss(32, 3),
        "all-nli-pair-score": cosent,
        "all-nli-triplet": mnrl,
        "stsb": cosent,
        "quora": mnrl,
        "natural-questions": mnrl,
    }
    for sampler in (None, RoundRobinSampler):
        kwargs = {"multi_dataset_sampler": sampler} if sampler else {}
        dm = EmbeddingDataModule(train, tiny.tokenizer, batch_size=8, max_seq_length=32, **kwargs)
        dm.check_losses(loss_dict, 32)
        seen = collections_counter(b.dataset for b in dm.train_dataloader())
        assert set(seen) == set(train) and all(n == 5 for n in seen.values())
        for name in ("all-nli-pair", "stsb"):
            batch = next(b for b in dm.train_dataloader() if b.dataset == name)
            value = loss_dict[name]([tiny(f) for f in batch.features], batch.labels)
            assert torch.isfinite(value)


def collections_counter(items):
    import collections

    return collections.Counter(items)


# ---- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "datasets,match,exc",
    [
        ({"x": DatasetSpec("data/missing.csv")}, "does not exist", FileNotFoundError),
        ({"x": DatasetSpec("./no/such/folder")}, "does not exist", FileNotFoundError),
        ({"x": DatasetSpec("nobody/no-such-dataset-st-lightning")}, "offline", FileNotFoundError),
        ({"x": Dataset.from_dict({"a": [], "b": []})}, "empty", ValueError),
        (
            {"x": DatasetSpec(str(DATA / "stsb"), columns=["sentence1", "sentence3"])},
            "no column",
            ValueError,
        ),
    ],
)
def test_bad_sources_name_the_dataset(datasets, match, exc, tiny):
    with pytest.raises(exc, match=match) as err:
        module(datasets, tiny).setup()
    assert "'x'" in str(err.value)


@pytest.mark.parametrize(
    "rows,match",
    [
        ({"a": ["ok", ""], "b": ["x", "y"]}, "empty or missing text"),
        ({"a": ["ok", None], "b": ["x", "y"]}, "empty or missing text"),
        ({"a": ["ok", "fine"], "b": ["x", "y"], "score": [0.5, float("nan")]}, "NaN label"),
    ],
)
def test_invalid_rows_error_or_skip_with_a_count(rows, match, tiny, caplog):
    with pytest.raises(ValueError, match=match) as err:
        module({"d": Dataset.from_dict(rows)}, tiny).setup()
    assert "'d'" in str(err.value) and "row 1" in str(err.value)
    dm = module({"d": Dataset.from_dict(rows)}, tiny, on_invalid="skip")
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert len(dm.tokenized["d"]) == 1 and "skipping 1 invalid row" in caplog.text


def test_non_numeric_scores(tiny):
    rows = Dataset.from_dict({"a": ["ok", "fine"], "b": ["x", "y"], "score": ["high", "0.5"]})
    with pytest.raises(ValueError, match="2 row.*score='high'"):
        module({"d": rows}, tiny).setup()
    with pytest.raises(ValueError, match="no valid rows left"):
        module({"d": rows}, tiny, on_invalid="skip").setup()


@pytest.mark.parametrize(
    "spec,loss,match",
    [
        (STS, losses.MultipleNegativesRankingLoss(), "does not use"),
        (NLI, losses.CoSENTLoss(), "it has 3 input columns"),
        (
            DatasetSpec(str(DATA / "stsb"), columns=["sentence1", "sentence2"]),
            losses.CoSENTLoss(),
            "no label",
        ),
        (
            DatasetSpec(str(DATA / "all-nli"), "pair-class", "train[:20]"),
            losses.CoSENTLoss(),
            "integer labels",
        ),
    ],
)
def test_dataset_and_loss_mismatch_fails_before_training(spec, loss, match, tiny):
    dm = module({"d": spec}, tiny)
    with pytest.raises(ValueError, match=match):
        dm.check_losses({"d": loss})


def test_loss_keys_must_match_dataset_names(tiny):
    dm = module({"nli": NLI, "sts": STS}, tiny)
    with pytest.raises(ValueError, match=r"keyed \['nli'\].*named \['nli', 'sts'\]"):
        dm.check_losses({"nli": losses.MultipleNegativesRankingLoss()})


def test_state_restores_position(tiny):
    dm = module({"nli": NLI, "sts": STS}, tiny)
    expected = [b.features[0]["input_ids"] for b in dm.train_dataloader()]
    it = iter(dm.train_dataloader())
    for _ in range(4):
        next(it)
    state = dm.state_dict()
    fresh = module({"nli": NLI, "sts": STS}, tiny)
    fresh.load_state_dict(state)
    rest = [b.features[0]["input_ids"] for b in fresh.train_dataloader()]
    assert len(rest) == len(expected) - 4
    assert all(torch.equal(a, b) for a, b in zip(rest, expected[4:], strict=True))
