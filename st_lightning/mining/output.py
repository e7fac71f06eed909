"""The mined negatives as dataset rows, in the four output formats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from datasets import Dataset
from torch import Tensor

if TYPE_CHECKING:
    from st_lightning.mining.miner import MiningStats

OutputFormat = Literal["triplet", "n-tuple", "labeled-pair", "labeled-list"]


@dataclass
class Mined:
    """Per unique query: its positives (corpus ids, scores flattened in query order) and its
    negatives (corpus ids and scores, (n_queries, n), -inf where none was found)."""

    queries: list[str]
    corpus: list[str]
    positive_ids: list[list[int]]
    positive_scores: Tensor
    negative_ids: Tensor
    negative_scores: Tensor
    anchor_column: str
    positive_column: str


def build_rows(
    mined: Mined, output_format: OutputFormat, output_scores: bool, n: int, stats: MiningStats
) -> Dataset:
    """One row per (query, positive) and negative (`triplet`), per (query, positive) with all n
    negatives (`n-tuple`), per text (`labeled-pair`) or per (query, positive) with its list
    (`labeled-list`); rows follow the order of first appearance of each query."""
    a, p = mined.anchor_column, mined.positive_column
    corpus, queries = mined.corpus, mined.queries
    neg_ids = mined.negative_ids.tolist()
    neg_scores = mined.negative_scores.tolist()
    pos_scores = mined.positive_scores.tolist()
    finite = torch.isfinite(mined.negative_scores).tolist()
    rows: dict[str, list[Any]] = {a: [], p: []}
    kept_pos, kept_neg = [], []
    k = 0  # index into the flattened (query, positive) pairs
    for qi, query in enumerate(queries):
        negatives = [
            (d, s) for d, s, f in zip(neg_ids[qi], neg_scores[qi], finite[qi], strict=True) if f
        ]
        if output_format == "labeled-pair":
            for d in mined.positive_ids[qi]:
                _append(rows, a, query, p, corpus[d])
                rows.setdefault("score" if output_scores else "label", []).append(
                    pos_scores[k] if output_scores else 1
                )
                kept_pos.append(pos_scores[k])
                k += 1
            for d, s in negatives:
                _append(rows, a, query, p, corpus[d])
                rows.setdefault("score" if output_scores else "label", []).append(
                    s if output_scores else 0
                )
                kept_neg.append(s)
            continue
        for d in mined.positive_ids[qi]:
            ps = pos_scores[k]
            k += 1
            if output_format == "triplet":
                for nd, ns in negatives:
                    _append(rows, a, query, p, corpus[d])
                    rows.setdefault("negative", []).append(corpus[nd])
                    if output_scores:
                        rows.setdefault("scores", []).append([ps, ns])
                    kept_pos.append(ps)
                    kept_neg.append(ns)
            elif output_format == "n-tuple":
                if len(negatives) < n:
                    stats.rows_without_enough_negatives += 1
                    continue
                _append(rows, a, query, p, corpus[d])
                for i, (nd, _) in enumerate(negatives, start=1):
                    rows.setdefault(f"negative_{i}", []).append(corpus[nd])
                if output_scores:
                    rows.setdefault("scores", []).append([ps] + [s for _, s in negatives])
                kept_pos.append(ps)
                kept_neg.extend(s for _, s in negatives)
            else:  # labeled-list
                if not negatives:
                    continue
                rows[a].append(query)
                rows[p].append([corpus[d]] + [corpus[nd] for nd, _ in negatives])
                if output_scores:
                    rows.setdefault("scores", []).append([ps] + [s for _, s in negatives])
                else:
                    rows.setdefault("labels", []).append([1] + [0] * len(negatives))
                kept_pos.append(ps)
                kept_neg.extend(s for _, s in negatives)
    if not rows[a]:
        # Keep the schema of an empty result: the columns this format would have had.
        for name in _empty_columns(output_format, output_scores, n):
            rows.setdefault(name, [])
    stats.rows_out = len(rows[a])
    stats.positive_scores = summary(kept_pos)
    stats.negative_scores = summary(kept_neg)
    return Dataset.from_dict(rows)


def _append(rows: dict[str, list[Any]], a: str, query: str, p: str, text: str) -> None:
    rows[a].append(query)
    rows[p].append(text)


def _empty_columns(output_format: str, output_scores: bool, n: int) -> list[str]:
    if output_format == "triplet":
        return ["negative"] + (["scores"] if output_scores else [])
    if output_format == "n-tuple":
        return [f"negative_{i}" for i in range(1, n + 1)] + (["scores"] if output_scores else [])
    if output_format == "labeled-pair":
        return ["score" if output_scores else "label"]
    return ["scores" if output_scores else "labels"]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    t = torch.tensor(values, dtype=torch.float64)
    return {
        "count": len(values),
        "mean": float(t.mean()),
        "median": float(t.median()),
        "min": float(t.min()),
        "max": float(t.max()),
    }
