"""Evaluators over the bundled data sets (`data/`), by name, for configs and the CLI."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

from st_lightning.data.sources import DatasetSpec, load_source
from st_lightning.evaluation.base import Evaluator
from st_lightning.evaluation.binary import BinaryClassificationEvaluator
from st_lightning.evaluation.retrieval import InformationRetrievalEvaluator
from st_lightning.evaluation.sts import EmbeddingSimilarityEvaluator
from st_lightning.evaluation.triplet import TripletEvaluator


def stsb(
    split: str = "test", name: str | None = None, data_dir: str = "data", **kwargs
) -> Evaluator:
    """STS Benchmark pairs with gold scores in [0, 1] (`split`: train, validation, test)."""
    rows = load_source(DatasetSpec(str(Path(data_dir) / "stsb"), split=split), f"stsb-{split}")
    return EmbeddingSimilarityEvaluator(
        rows["sentence1"],
        rows["sentence2"],
        rows["score"],
        name=name or f"stsb_{split.split('[')[0]}",
        **kwargs,
    )


def nli_triplets(
    split: str = "test", name: str | None = None, data_dir: str = "data", **kwargs
) -> Evaluator:
    """all-nli triplets (dev = SNLI dev, test = SNLI test)."""
    rows = load_source(
        DatasetSpec(str(Path(data_dir) / "all-nli"), "triplet", split), f"nli-{split}"
    )
    return TripletEvaluator(
        rows["anchor"],
        rows["positive"],
        rows["negative"],
        name=name or f"nli_{split.split('[')[0]}",
        **kwargs,
    )


def quora_duplicates(
    split: str = "train[-2000:]", name: str = "quora_duplicates", data_dir: str = "data", **kwargs
) -> Evaluator:
    """Quora question pairs labelled duplicate or not (binary classification)."""
    spec = DatasetSpec(str(Path(data_dir) / "quora-duplicates"), "pair-class", split)
    rows = load_source(spec, name)
    return BinaryClassificationEvaluator(
        rows["sentence1"], rows["sentence2"], rows["label"], name=name, **kwargs
    )


def scifact(
    split: str = "test",
    name: str | None = None,
    data_dir: str = "data",
    max_queries: int | None = None,
    **kwargs,
) -> Evaluator:
    """SciFact retrieval (BEIR): claims as queries over 5183 abstracts (title + text)."""
    root = Path(data_dir) / "scifact"
    with (root / "queries.jsonl").open(encoding="utf-8") as f:
        queries = {q["_id"]: q["text"] for q in map(json.loads, f)}
    with gzip.open(root / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        corpus = {d["_id"]: f"{d['title']} {d['text']}".strip() for d in map(json.loads, f)}
    relevant: dict[str, set[str]] = {}
    for line in (root / "qrels" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, doc, score = line.split("\t")
        if int(score) > 0:
            relevant.setdefault(qid, set()).add(doc)
    ids = [q for q in queries if q in relevant][:max_queries]
    return InformationRetrievalEvaluator(
        {q: queries[q] for q in ids},
        corpus,
        {q: relevant[q] for q in ids},
        name=name or f"scifact_{split}",
        **kwargs,
    )


SUITES: dict[str, Callable[..., Evaluator]] = {
    "stsb-test": lambda **kw: stsb("test", **kw),
    "stsb-dev": lambda **kw: stsb("validation", **kw),
    "nli-test": lambda **kw: nli_triplets("test", **kw),
    "nli-dev": lambda **kw: nli_triplets("dev", **kw),
    "scifact-test": lambda **kw: scifact("test", **kw),
    "quora-duplicates": quora_duplicates,
}
