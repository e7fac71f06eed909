"""InformationRetrievalEvaluator: rank a corpus for each query and score the ranking."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor

from st_lightning.evaluation.base import Evaluator, TextGroup
from st_lightning.evaluation.similarity import check_fns
from st_lightning.similarity import similarity_matrix


class InformationRetrievalEvaluator(Evaluator):
    """Accuracy@k, precision@k, recall@k, MRR@k, NDCG@k and MAP@k (binary relevance).

    Only queries with at least one relevant document are scored. Queries are embedded with the
    `query_prompt_name` prompt and documents with `corpus_prompt_name` (when the model has
    them). Scores are computed against `corpus_chunk_size` documents at a time, keeping a running
    top-k, so memory stays bounded for large corpora; ties rank by document id.

    Metrics: `<fn>_accuracy@k`, `<fn>_precision@k`, `<fn>_recall@k`, `<fn>_mrr@k`,
    `<fn>_ndcg@k`, `<fn>_map@k`. Primary: `<fn>_ndcg@<max ndcg k>` of the main similarity.
    """

    def __init__(
        self,
        queries: Mapping[str, str],
        corpus: Mapping[str, str],
        relevant_docs: Mapping[str, Iterable[str]],
        name: str = "ir",
        mrr_at_k: Sequence[int] = (10,),
        ndcg_at_k: Sequence[int] = (10,),
        accuracy_at_k: Sequence[int] = (1, 3, 5, 10),
        precision_recall_at_k: Sequence[int] = (1, 3, 5, 10),
        map_at_k: Sequence[int] = (100,),
        similarity_fn_names: Sequence[str] = ("cosine",),
        main_similarity: str | None = None,
        corpus_chunk_size: int = 50_000,
        query_prompt_name: str | None = "query",
        corpus_prompt_name: str | None = "document",
        truncate_dim: int | None = None,
        batch_size: int = 64,
    ) -> None:
        super().__init__(name, truncate_dim, batch_size)
        self.similarity_fn_names = check_fns(list(similarity_fn_names))
        if {"euclidean", "manhattan"} & set(self.similarity_fn_names):
            raise ValueError("Retrieval ranks by 'cosine' or 'dot' similarity.")
        self.main_similarity = main_similarity or self.similarity_fn_names[0]
        relevant = {q: set(map(str, docs)) for q, docs in relevant_docs.items()}
        missing = sorted({d for docs in relevant.values() for d in docs} - set(map(str, corpus)))
        if missing:
            raise ValueError(
                f"Evaluator {name!r}: qrels point to {len(missing)} document(s) missing from the "
                f"corpus (e.g. {missing[:3]}); add them to the corpus or drop those qrels."
            )
        self.query_ids = [str(q) for q in queries if relevant.get(str(q))]
        if not self.query_ids or not corpus:
            raise ValueError(
                f"Evaluator {name!r}: no query with a relevant document, or no corpus."
            )
        self.queries = [queries[q] for q in self.query_ids]
        self.corpus_ids = [str(d) for d in corpus]
        self.corpus = list(corpus.values())
        self.relevant = relevant
        self.ks = {
            "accuracy": sorted(set(accuracy_at_k)),
            "precision_recall": sorted(set(precision_recall_at_k)),
            "mrr": sorted(set(mrr_at_k)),
            "ndcg": sorted(set(ndcg_at_k)),
            "map": sorted(set(map_at_k)),
        }
        self.max_k = max(max(v) for v in self.ks.values() if v)
        self.corpus_chunk_size = corpus_chunk_size
        self.query_prompt_name = query_prompt_name
        self.corpus_prompt_name = corpus_prompt_name

    @property
    def primary_metric(self) -> str:
        return f"{self.main_similarity}_ndcg@{max(self.ks['ndcg'])}"

    def inputs(self) -> dict[str, TextGroup]:
        return {
            "queries": TextGroup(self.queries, self.query_prompt_name),
            "corpus": TextGroup(self.corpus, self.corpus_prompt_name),
        }

    def top_hits(self, queries: Tensor, corpus: Tensor, fn: str) -> list[list[tuple[float, int]]]:
        """Per query, the best `max_k` (score, corpus index), ties broken by document id."""
        k = min(self.max_k, len(self.corpus_ids))
        best_scores = torch.full((len(queries), 0), -torch.inf)
        best_index = torch.zeros((len(queries), 0), dtype=torch.long)
        for start in range(0, len(corpus), self.corpus_chunk_size):
            scores = similarity_matrix(queries, corpus[start : start + self.corpus_chunk_size], fn)
            top = scores.topk(min(k, scores.shape[1]), dim=1)
            best_scores = torch.cat([best_scores, top.values.cpu()], dim=1)
            best_index = torch.cat([best_index, top.indices.cpu() + start], dim=1)
            keep = best_scores.topk(min(k, best_scores.shape[1]), dim=1).indices
            best_scores, best_index = best_scores.gather(1, keep), best_index.gather(1, keep)
        hits = []
        for scores, index in zip(best_scores.tolist(), best_index.tolist(), strict=True):
            pairs = sorted(
                zip(scores, index, strict=True), key=lambda h: (-h[0], self.corpus_ids[h[1]])
            )
            hits.append(pairs)
        return hits

    def compute(self, embeddings: Mapping[str, Tensor]) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for fn in self.similarity_fn_names:
            hits = self.top_hits(embeddings["queries"], embeddings["corpus"], fn)
            for name, value in self.ranking_metrics(hits).items():
                metrics[f"{fn}_{name}"] = value
        return metrics

    def ranking_metrics(self, hits: list[list[tuple[float, int]]]) -> dict[str, float]:
        sums: dict[str, float] = {}

        def add(key: str, value: float) -> None:
            sums[key] = sums.get(key, 0.0) + value

        for qid, ranked in zip(self.query_ids, hits, strict=True):
            relevant = self.relevant[qid]
            flags = [self.corpus_ids[i] in relevant for _, i in ranked]
            for k in self.ks["accuracy"]:
                add(f"accuracy@{k}", float(any(flags[:k])))
            for k in self.ks["precision_recall"]:
                correct = sum(flags[:k])
                add(f"precision@{k}", correct / k)
                add(f"recall@{k}", correct / len(relevant))
            for k in self.ks["mrr"]:
                first = next((r for r, f in enumerate(flags[:k]) if f), None)
                add(f"mrr@{k}", 0.0 if first is None else 1.0 / (first + 1))
            for k in self.ks["ndcg"]:
                dcg = sum(1.0 / math.log2(r + 2) for r, f in enumerate(flags[:k]) if f)
                ideal = sum(1.0 / math.log2(r + 2) for r in range(min(k, len(relevant))))
                add(f"ndcg@{k}", dcg / ideal)
            for k in self.ks["map"]:
                correct, total = 0, 0.0
                for r, f in enumerate(flags[:k]):
                    if f:
                        correct += 1
                        total += correct / (r + 1)
                add(f"map@{k}", total / min(k, len(relevant)))
        return {key: value / len(self.query_ids) for key, value in sums.items()}
