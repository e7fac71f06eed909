"""Top-k search of normalized embeddings: exact and chunked (memory bounded), or FAISS."""

from __future__ import annotations

import importlib.util

import torch
from torch import Tensor

from st_lightning.mining.progress import progress


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def top_k(
    queries: Tensor,
    corpus: Tensor,
    k: int,
    *,
    chunk_size: int = 1 << 24,
    use_faiss: bool = False,
    show_progress: bool = True,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """The `k` highest inner products of each query with the corpus, highest first.

    Returns (scores, indices), both (n_queries, k). Where the corpus has fewer than `k` rows the
    missing places hold score -inf and index -1.

    Exact search computes one (query chunk x corpus chunk) block of scores at a time, at most
    `chunk_size` of them, and merges each block's top k into a running top k: memory is
    bounded by the chunk size, not by n_queries x n_corpus; the blocks are computed on
    `device` (a GPU when the model is on one) and the results returned on the CPU. `use_faiss`
    searches a flat (exact) FAISS inner-product index instead.
    """
    n_queries, n_corpus = len(queries), len(corpus)
    kk = min(k, n_corpus)
    if use_faiss:
        scores, indices = _faiss_top_k(queries, corpus, kk, chunk_size, show_progress)
    else:
        scores, indices = _chunked_top_k(queries, corpus, kk, chunk_size, show_progress, device)
    if kk < k:
        scores = torch.cat([scores, scores.new_full((n_queries, k - kk), -float("inf"))], dim=1)
        indices = torch.cat([indices, indices.new_full((n_queries, k - kk), -1)], dim=1)
    return scores, indices


def _blocks(n_queries: int, n_corpus: int, k: int, chunk_size: int) -> tuple[int, int]:
    """(query rows, corpus rows) per score block: about `chunk_size` scores, and corpus
    blocks of at least k rows (so each block's top k exists)."""
    query_rows = max(1, min(n_queries, 4096, chunk_size // max(k, 1)))
    corpus_rows = max(k, min(n_corpus, chunk_size // query_rows))
    return query_rows, corpus_rows


def _chunked_top_k(
    queries: Tensor,
    corpus: Tensor,
    k: int,
    chunk_size: int,
    show_progress: bool,
    device: torch.device | str,
) -> tuple[Tensor, Tensor]:
    query_rows, corpus_rows = _blocks(len(queries), len(corpus), k, chunk_size)
    all_scores, all_indices = [], []
    bar = progress(len(queries), "Searching", show_progress)
    for q0 in range(0, len(queries), query_rows):
        q = queries[q0 : q0 + query_rows].to(device)
        best_scores = q.new_empty((len(q), 0))
        best_indices = torch.empty((len(q), 0), dtype=torch.long, device=q.device)
        for c0 in range(0, len(corpus), corpus_rows):
            block = q @ corpus[c0 : c0 + corpus_rows].to(device).T
            scores, indices = torch.topk(block, k=min(k, block.shape[1]), dim=1)
            scores = torch.cat([best_scores, scores], dim=1)
            indices = torch.cat([best_indices, indices + c0], dim=1)
            if scores.shape[1] > k:
                scores, order = torch.topk(scores, k=k, dim=1)
                indices = indices.gather(1, order)
            best_scores, best_indices = scores, indices
        all_scores.append(best_scores.cpu())
        all_indices.append(best_indices.cpu())
        bar.update(len(q))
    bar.close()
    return torch.cat(all_scores), torch.cat(all_indices)


def _faiss_top_k(
    queries: Tensor, corpus: Tensor, k: int, chunk_size: int, show_progress: bool
) -> tuple[Tensor, Tensor]:
    import faiss

    index = faiss.IndexFlatIP(corpus.shape[1])
    index.add(corpus.float().contiguous().numpy())
    rows = max(1, chunk_size // max(len(corpus), 1))
    all_scores, all_indices = [], []
    bar = progress(len(queries), "Searching (FAISS)", show_progress)
    for q0 in range(0, len(queries), rows):
        scores, indices = index.search(queries[q0 : q0 + rows].float().contiguous().numpy(), k)
        all_scores.append(torch.from_numpy(scores))
        all_indices.append(torch.from_numpy(indices).long())
        bar.update(min(rows, len(queries) - q0))
    bar.close()
    return torch.cat(all_scores), torch.cat(all_indices)
