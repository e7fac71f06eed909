"""Evaluators over the bundled data sets (`data/`), by name, for configs and the CLI."""

from __future__ import annotations

import gzip
import inspect
import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from st_lightning.data.sources import DatasetSpec, load_source
from st_lightning.evaluation.base import Evaluator
from st_lightning.evaluation.binary import BinaryClassificationEvaluator
from st_lightning.evaluation.retrieval import InformationRetrievalEvaluator
from st_lightning.evaluation.sts import EmbeddingSimilarityEvaluator
from st_lightning.evaluation.triplet import TripletEvaluator

F = TypeVar("F", bound=Callable[..., Evaluator])


def passes_to(evaluator: type[Evaluator], *given: str) -> Callable[[F], F]:
    """Give a suite that passes `**kwargs` on to `evaluator` an explicit signature: its own
    arguments, then the evaluator's except `given` (those the suite fills from the data). Config
    checks and `help()` then see every argument, and a misspelt one is refused by name."""

    def wrap(suite: F) -> F:
        own = [
            p for p in inspect.signature(suite).parameters.values() if p.kind is not p.VAR_KEYWORD
        ]
        hints = typing.get_type_hints(evaluator.__init__)
        taken = {p.name for p in own} | set(given) | {"self"}
        passed = [
            p.replace(kind=p.KEYWORD_ONLY, annotation=hints.get(p.name, Any))
            for p in inspect.signature(evaluator.__init__).parameters.values()
            if p.name not in taken and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]
        suite.__signature__ = inspect.Signature([*own, *passed])  # type: ignore[attr-defined]
        return suite

    return wrap


@passes_to(EmbeddingSimilarityEvaluator, "sentences1", "sentences2", "scores")
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


@passes_to(TripletEvaluator, "anchors", "positives", "negatives")
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


@passes_to(BinaryClassificationEvaluator, "sentences1", "sentences2", "labels")
def quora_duplicates(
    split: str = "train[-2000:]", name: str = "quora_duplicates", data_dir: str = "data", **kwargs
) -> Evaluator:
    """Quora question pairs labelled duplicate or not (binary classification)."""
    spec = DatasetSpec(str(Path(data_dir) / "quora-duplicates"), "pair-class", split)
    rows = load_source(spec, name)
    return BinaryClassificationEvaluator(
        rows["sentence1"], rows["sentence2"], rows["label"], name=name, **kwargs
    )


@passes_to(InformationRetrievalEvaluator, "queries", "corpus", "relevant_docs")
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
