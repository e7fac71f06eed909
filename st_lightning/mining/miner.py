"""Hard-negative mining: for each (anchor, positive) row, the corpus texts an embedding model
scores highest for the anchor that are not its positives, filtered by rank, score and margin."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from datasets import Dataset
from torch import Tensor

from st_lightning.encoders import SentenceEncoder
from st_lightning.mining.embed import Precision, embed_texts, world
from st_lightning.mining.output import Mined, OutputFormat, build_rows
from st_lightning.mining.search import faiss_available, top_k

log = logging.getLogger(__name__)

FORMATS = ("triplet", "n-tuple", "labeled-pair", "labeled-list")
QUERY_PROMPT_NAMES = ("query",)
CORPUS_PROMPT_NAMES = ("document", "passage", "corpus")
Rescorer = Callable[[list[tuple[str, str]]], Sequence[float]]


@dataclass
class MiningStats:
    """What a mining run found and skipped; written into the mined dataset's card."""

    rows_in: int = 0
    queries: int = 0
    corpus: int = 0
    range_max: int = 0
    rows_out: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    candidates: int = 0
    rows_without_enough_negatives: int = 0
    positive_scores: dict[str, float] = field(default_factory=dict)
    negative_scores: dict[str, float] = field(default_factory=dict)


def mine_hard_negatives(
    dataset: Dataset,
    model: SentenceEncoder | str | os.PathLike,
    *,
    anchor_column: str | None = None,
    positive_column: str | None = None,
    corpus: Sequence[str] | None = None,
    cross_encoder: Any | None = None,
    range_min: int = 0,
    range_max: int | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    num_negatives: int = 3,
    sampling_strategy: Literal["top", "random"] = "top",
    query_prompt_name: str | None = None,
    query_prompt: str | None = None,
    corpus_prompt_name: str | None = None,
    corpus_prompt: str | None = None,
    include_positives: bool = False,
    output_format: OutputFormat = "triplet",
    output_scores: bool = False,
    batch_size: int = 64,
    chunk_size: int = 1 << 24,
    use_faiss: bool = False,
    precision: Precision = "float32",
    cache_folder: str | os.PathLike | None = None,
    seed: int = 0,
    show_progress: bool = True,
    stats: MiningStats | None = None,
) -> Dataset:
    """Mine hard negatives for the (anchor, positive) rows of `dataset`.

    The corpus is `corpus` plus every positive (or the positives alone), without duplicates;
    anchors that repeat are one query whose positives are all excluded. For each query the
    `range_max` highest-scoring corpus texts (cosine similarity of normalized embeddings) are
    candidates; positives, those within `absolute_margin` of the query's lowest positive score
    or above `positive - |positive| * relative_margin`, and those above `max_score` or below
    `min_score` are skipped; the first `range_min` remaining are skipped; then the highest
    (`sampling_strategy="top"`) or a random `num_negatives` are kept. A `cross_encoder` (a
    sentence-transformers CrossEncoder, or a callable scoring (query, text) pairs) rescores the
    candidates and positives before any score filter.

    Output formats: `triplet` (anchor, positive, negative: one row per negative),
    `n-tuple` (anchor, positive, negative_1..negative_n: rows with n negatives),
    `labeled-pair` (anchor, text, label 1/0), `labeled-list` (anchor, [positive, negatives...],
    labels); `output_scores` replaces labels by scores (or adds a `scores` column).

    The same settings give the same negatives as sentence-transformers' `mine_hard_negatives`
    (`sampling_strategy="top"`). Every setting is checked before any embedding is computed.
    Under torchrun, the embedding is shared among the processes; every process returns the
    whole result.
    """
    settings = check_settings(
        dataset,
        anchor_column=anchor_column,
        positive_column=positive_column,
        corpus=corpus,
        cross_encoder=cross_encoder,
        range_min=range_min,
        range_max=range_max,
        max_score=max_score,
        min_score=min_score,
        absolute_margin=absolute_margin,
        relative_margin=relative_margin,
        num_negatives=num_negatives,
        sampling_strategy=sampling_strategy,
        include_positives=include_positives,
        output_format=output_format,
        batch_size=batch_size,
        chunk_size=chunk_size,
        use_faiss=use_faiss,
    )
    anchor, positive = settings["anchor_column"], settings["positive_column"]
    stats = stats if stats is not None else MiningStats()
    queries_all = list(dataset[anchor])
    positives_all = list(dataset[positive])
    texts = list(dict.fromkeys([*(corpus or []), *positives_all]))
    corpus_index = {t: i for i, t in enumerate(texts)}
    queries = list(dict.fromkeys(queries_all))
    query_index = {q: i for i, q in enumerate(queries)}
    positive_ids: list[list[int]] = [[] for _ in queries]
    rows_per_query = [0] * len(queries)
    for q, p in zip(queries_all, positives_all, strict=True):
        qi = query_index[q]
        rows_per_query[qi] += 1
        if corpus_index[p] not in positive_ids[qi]:
            positive_ids[qi].append(corpus_index[p])
    # Candidates per query: range_max, plus room for the positives the search also finds.
    max_positives = max(rows_per_query)
    filtering = (
        absolute_margin is not None
        or relative_margin is not None
        or max_score is not None
        or (cross_encoder is not None and min_score is not None)
    )
    if range_max is None:
        extra = num_negatives * 10 if filtering else num_negatives
        range_max = range_min + extra + max_positives
    if range_min >= len(texts):
        raise ValueError(
            f"range_min={range_min} skips the whole corpus of {len(texts)} unique texts; "
            "lower range_min or mine against a larger corpus."
        )
    stats.rows_in, stats.queries, stats.corpus = len(dataset), len(queries), len(texts)
    stats.range_max = range_max

    if isinstance(model, (str, os.PathLike)):
        encoder = SentenceEncoder.from_pretrained(model)
        encoder.to("cuda" if torch.cuda.is_available() else "cpu")
    else:
        encoder = model
    q_prompt = _prompt(encoder, query_prompt_name, query_prompt, QUERY_PROMPT_NAMES)
    c_prompt = _prompt(encoder, corpus_prompt_name, corpus_prompt, CORPUS_PROMPT_NAMES)
    common: dict[str, Any] = dict(
        batch_size=batch_size,
        precision=precision,
        cache_folder=cache_folder,
        show_progress=show_progress,
    )
    corpus_emb = embed_texts(encoder, texts, prompt=c_prompt, desc="Corpus", **common)
    query_emb = embed_texts(encoder, queries, prompt=q_prompt, desc="Queries", **common)
    scores, indices = top_k(
        query_emb,
        corpus_emb,
        range_max + max_positives,
        chunk_size=chunk_size,
        use_faiss=use_faiss,
        show_progress=show_progress,
        device=encoder.device,
    )
    pair_query = torch.tensor([qi for qi, ids in enumerate(positive_ids) for _ in ids])
    pair_doc = torch.tensor([d for ids in positive_ids for d in ids])
    positive_scores = (query_emb[pair_query] * corpus_emb[pair_doc]).sum(-1)
    del query_emb, corpus_emb

    if cross_encoder is not None and filtering_with_scores(
        absolute_margin, relative_margin, max_score, min_score
    ):
        scores, positive_scores = rescore(
            cross_encoder, queries, texts, indices, pair_query, pair_doc, batch_size
        )
    scores[indices < 0] = -float("inf")
    stats.candidates = int(torch.isfinite(scores).sum())

    if not include_positives:
        positives = torch.full((len(queries), max(len(p) for p in positive_ids)), -2)
        for qi, ids in enumerate(positive_ids):
            positives[qi, : len(ids)] = torch.tensor(ids)
        is_positive = (indices.unsqueeze(-1) == positives.unsqueeze(1)).any(-1)
        scores[is_positive] = -float("inf")
    _filter(scores, positive_scores, positive_ids, stats, absolute_margin, relative_margin)
    for name, removed in (
        ("max_score", scores > max_score if max_score is not None else None),
        ("min_score", scores < min_score if min_score is not None else None),
    ):
        if removed is not None:
            _skip(scores, removed, name, stats)

    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :range_max]
    scores, indices = (
        scores.gather(1, order)[:, range_min:],
        indices.gather(1, order)[:, range_min:],
    )
    if sampling_strategy == "top":
        scores, indices = scores[:, :num_negatives], indices[:, :num_negatives]
    else:
        scores, indices = _sample(scores, indices, num_negatives, seed)

    mined = Mined(
        queries=queries,
        corpus=texts,
        positive_ids=positive_ids,
        positive_scores=positive_scores,
        negative_ids=indices,
        negative_scores=scores,
        anchor_column=anchor,
        positive_column=positive,
    )
    out = build_rows(mined, output_format, output_scores, num_negatives, stats)
    if world()[0] == 0:
        report(stats)
    return out


def check_settings(dataset: Dataset, **s: Any) -> dict[str, Any]:
    """Every setting and the input columns, checked before any model is loaded or run."""
    if len(dataset) == 0:
        raise ValueError("The dataset to mine is empty: it needs (anchor, positive) rows.")
    columns = dataset.column_names
    for key, default in (("anchor_column", 0), ("positive_column", 1)):
        name = s[key]
        if name is None:
            if len(columns) <= default:
                raise ValueError(
                    f"The dataset has columns {columns}; mining needs an anchor and a positive "
                    "column (set anchor_column and positive_column)."
                )
            s[key] = columns[default]
        elif name not in columns:
            raise ValueError(f"{key}={name!r} is not a column of the dataset; it has {columns}.")
    if s["anchor_column"] == s["positive_column"]:
        raise ValueError(f"anchor_column and positive_column are both {s['anchor_column']!r}.")
    for key in ("anchor_column", "positive_column"):
        values = dataset[s[key]]
        bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
        if bad is not None:
            raise ValueError(f"Column {s[key]!r} must hold texts; row {bad} holds {values[bad]!r}.")
    corpus = s["corpus"]
    if corpus is not None:
        if len(corpus) == 0:
            raise ValueError(
                "The corpus is empty; pass corpus texts or corpus=None to mine among the positives."
            )
        bad = next((i for i, t in enumerate(corpus) if not isinstance(t, str)), None)
        if bad is not None:
            raise ValueError(f"Corpus item {bad} is {corpus[bad]!r}, not a text.")
    if s["output_format"] not in FORMATS:
        raise ValueError(f"output_format={s['output_format']!r}; choose one of {list(FORMATS)}.")
    if s["sampling_strategy"] not in ("top", "random"):
        raise ValueError(f"sampling_strategy={s['sampling_strategy']!r}; choose 'top' or 'random'.")
    if s["include_positives"] and s["output_format"] != "n-tuple":
        raise ValueError(
            "include_positives=True keeps the ranking with the positives in it, which only the "
            f"'n-tuple' output format holds; set output_format='n-tuple' (got "
            f"{s['output_format']!r})."
        )
    if s["num_negatives"] < 1:
        raise ValueError(f"num_negatives must be at least 1, got {s['num_negatives']}.")
    if s["range_min"] < 0:
        raise ValueError(f"range_min must be >= 0, got {s['range_min']}.")
    range_max = s["range_max"]
    if range_max is not None:
        if range_max <= s["range_min"]:
            raise ValueError(
                f"range_max={range_max} must be larger than range_min={s['range_min']}."
            )
        if s["num_negatives"] > range_max - s["range_min"]:
            raise ValueError(
                f"num_negatives={s['num_negatives']} does not fit between range_min="
                f"{s['range_min']} and range_max={range_max}; raise range_max or lower "
                "num_negatives or range_min."
            )
        corpus_size = len(set([*(corpus or []), *dataset[s["positive_column"]]]))
        if range_max > corpus_size:
            raise ValueError(
                f"range_max={range_max} is past the corpus size ({corpus_size} unique texts); "
                f"set range_max <= {corpus_size} or leave it unset."
            )
    if s["absolute_margin"] is not None and s["absolute_margin"] < 0:
        raise ValueError(
            f"absolute_margin must be >= 0 (skip negatives within this much of the positive), "
            f"got {s['absolute_margin']}."
        )
    if s["relative_margin"] is not None and not 0 <= s["relative_margin"] < 1:
        raise ValueError(
            f"relative_margin must be in [0, 1) (0.05 skips negatives scoring above 95% of the "
            f"positive), got {s['relative_margin']}."
        )
    if (
        s["max_score"] is not None
        and s["min_score"] is not None
        and s["min_score"] > s["max_score"]
    ):
        raise ValueError(
            f"min_score={s['min_score']} is above max_score={s['max_score']}: nothing can pass."
        )
    if s["batch_size"] < 1 or s["chunk_size"] < 1:
        raise ValueError("batch_size and chunk_size must be positive.")
    if s["use_faiss"] and not faiss_available():
        raise ImportError("use_faiss=True needs faiss: pip install 'st-lightning[faiss]'.")
    ce = s["cross_encoder"]
    if ce is not None and not (hasattr(ce, "predict") or callable(ce)):
        raise TypeError(
            "cross_encoder must be a sentence-transformers CrossEncoder or a callable that "
            f"scores a list of (query, text) pairs; got {type(ce).__name__}."
        )
    return s


def filtering_with_scores(*values: float | None) -> bool:
    return any(v is not None for v in values)


def _prompt(
    encoder: SentenceEncoder, name: str | None, prompt: str | None, defaults: tuple[str, ...]
) -> str:
    if prompt is not None or name is not None:
        return encoder.resolve_prompt(name, prompt)
    for candidate in defaults:  # the model's own query / document prompt, when it has one
        if candidate in encoder.prompts:
            return encoder.prompts[candidate]
    return encoder.resolve_prompt()


def rescore(
    cross_encoder: Any,
    queries: list[str],
    texts: list[str],
    indices: Tensor,
    pair_query: Tensor,
    pair_doc: Tensor,
    batch_size: int,
) -> tuple[Tensor, Tensor]:
    """Cross-encoder scores of every candidate and every (query, positive) pair."""

    def score(pairs: list[tuple[str, str]]) -> Tensor:
        if not pairs:
            return torch.empty(0)
        if hasattr(cross_encoder, "predict"):
            out = cross_encoder.predict(pairs, batch_size=batch_size, show_progress_bar=False)
        else:
            out = cross_encoder(pairs)
        return torch.as_tensor(out, dtype=torch.float32).reshape(-1).cpu()

    valid = indices >= 0
    rows, cols = valid.nonzero(as_tuple=True)
    pairs = [
        (queries[r], texts[indices[r, c]])
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
    ]
    scores = torch.full(indices.shape, -float("inf"))
    scores[rows, cols] = score(pairs)
    positive = score(
        [
            (queries[q], texts[d])
            for q, d in zip(pair_query.tolist(), pair_doc.tolist(), strict=True)
        ]
    )
    return scores, positive


def _skip(scores: Tensor, removed: Tensor, name: str, stats: MiningStats) -> None:
    removed = removed & torch.isfinite(scores)
    if removed.any():
        stats.skipped[name] = int(removed.sum())
    scores[removed] = -float("inf")


def _filter(
    scores: Tensor,
    positive_scores: Tensor,
    positive_ids: list[list[int]],
    stats: MiningStats,
    absolute_margin: float | None,
    relative_margin: float | None,
) -> None:
    if absolute_margin is None and relative_margin is None:
        return
    # Against the query's lowest-scoring positive: the harder positive sets the bar.
    counts = torch.tensor([len(p) for p in positive_ids])
    owner = torch.repeat_interleave(torch.arange(len(positive_ids)), counts)
    lowest = torch.full((len(positive_ids),), float("inf"), dtype=positive_scores.dtype)
    lowest = lowest.scatter_reduce(0, owner, positive_scores, reduce="amin")
    if absolute_margin is not None:
        _skip(scores, scores + absolute_margin > lowest[:, None], "absolute_margin", stats)
    if relative_margin is not None:
        bar = lowest - lowest.abs() * relative_margin
        _skip(scores, scores > bar[:, None], "relative_margin", stats)


def _sample(scores: Tensor, indices: Tensor, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """n candidates per row at random among its scored ones (or the first n), highest first."""
    rng = random.Random(seed)
    options = torch.isfinite(scores).sum(1).clamp(min=n).tolist()
    picks = torch.tensor([sorted(rng.sample(range(k), n)) for k in options], dtype=torch.long)
    return scores.gather(1, picks), indices.gather(1, picks)


def report(stats: MiningStats) -> None:
    skipped = ", ".join(f"{k} {v:,}" for k, v in stats.skipped.items()) or "none"
    log.info(
        "Mined %s rows from %s rows (%s queries, corpus %s): skipped %s; positive score %.4f, "
        "negative score %.4f (means)",
        f"{stats.rows_out:,}",
        f"{stats.rows_in:,}",
        f"{stats.queries:,}",
        f"{stats.corpus:,}",
        skipped,
        stats.positive_scores.get("mean", float("nan")),
        stats.negative_scores.get("mean", float("nan")),
    )
    if stats.rows_without_enough_negatives:
        log.warning(
            "%d (anchor, positive) rows had fewer than num_negatives negatives left after "
            "filtering and are not in the n-tuple output; widen range_max or loosen the "
            "margins to keep them.",
            stats.rows_without_enough_negatives,
        )
