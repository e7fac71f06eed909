"""MultipleNegativesRankingLoss: InfoNCE with in-batch negatives (and optional hard negatives)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from torch import Tensor

from st_lightning.losses.base import EmbeddingLoss
from st_lightning.losses.distributed import gather_with_grad, world
from st_lightning.similarity import check_similarity, similarity_matrix
from st_lightning.utils.checks import check_choice, check_positive

Direction = Literal["query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"]
DIRECTIONS: tuple[str, ...] = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
HARDNESS: tuple[str | None, ...] = (None, "in_batch_negatives", "hard_negatives", "all_negatives")


class MultipleNegativesRankingLoss(EmbeddingLoss):
    """Each anchor must score its own positive above every other candidate in the batch.

    Columns: (anchor, positive[, negative_1, ..., negative_k]); no label.
    Loss: mean_i -log softmax_j(scale * sim(a_i, c_j))[pos_i] over the candidates c of the chosen
    directions (van den Oord et al., 2018; Henderson et al., 2017).

    Args:
        scale: inverse temperature (20 = temperature 0.05).
        similarity: "cosine", "dot", "euclidean" or "manhattan".
        directions: "query_to_doc" (always), plus "query_to_query", "doc_to_query", "doc_to_doc".
        partition_mode: one softmax over all directions ("joint") or one per direction, averaged.
        hardness_mode / hardness_strength: add `strength * sim` (no gradient) to the logits of
            in-batch negatives, hard negatives or both, which up-weights hard negatives.
        gather_across_devices: score local anchors against the candidates of every rank.
    """

    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[int | None] = None
    citation = """@misc{oord2018representation,
    title={Representation Learning with Contrastive Predictive Coding},
    author={Aaron van den Oord and Yazhe Li and Oriol Vinyals},
    year={2018}, eprint={1807.03748}, archivePrefix={arXiv}
}"""

    def __init__(
        self,
        scale: float = 20.0,
        similarity: str = "cosine",
        directions: Sequence[Direction] = ("query_to_doc",),
        partition_mode: Literal["joint", "per_direction"] = "joint",
        hardness_mode: str | None = None,
        hardness_strength: float = 0.0,
        gather_across_devices: bool = False,
    ) -> None:
        super().__init__()
        check_positive("scale", scale)
        check_similarity(similarity)
        for d in directions:
            check_choice("direction", d, DIRECTIONS)
        if "query_to_doc" not in directions:
            raise ValueError("directions must include 'query_to_doc' (it holds the positive pair).")
        check_choice("partition_mode", partition_mode, ("joint", "per_direction"))
        if partition_mode == "per_direction" and {"query_to_query", "doc_to_doc"} & set(directions):
            raise ValueError(
                "partition_mode='per_direction' needs the positive in every direction; "
                "'query_to_query' and 'doc_to_doc' have none. Use partition_mode='joint'."
            )
        check_choice("hardness_mode", hardness_mode, HARDNESS)
        if hardness_strength < 0:
            raise ValueError(f"hardness_strength must be >= 0, got {hardness_strength}.")
        self.scale = scale
        self.similarity = similarity
        self.directions = tuple(directions)
        self.partition_mode = partition_mode
        self.hardness_mode = hardness_mode
        self.hardness_strength = hardness_strength
        self.gather_across_devices = gather_across_devices

    def forward(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        anchors, docs = embeddings[0], list(embeddings[1:])
        b = anchors.shape[0]
        offset = 0
        all_anchors = anchors
        if self.gather_across_devices:
            rank, _ = world()
            offset = rank * b
            all_anchors = gather_with_grad(anchors)
            docs = [gather_with_grad(d) for d in docs]
        n = all_anchors.shape[0]  # global batch
        candidates = torch.cat(docs)  # (n * columns, dim): positives first, then each negative
        mine = torch.arange(offset, offset + b, device=anchors.device)
        rows = torch.arange(b, device=anchors.device)
        own_positive = docs[0][mine]

        blocks = {"query_to_doc": similarity_matrix(anchors, candidates, self.similarity)}
        if "query_to_query" in self.directions:
            qq = similarity_matrix(anchors, all_anchors, self.similarity)
            self_pair = torch.zeros_like(qq, dtype=torch.bool).index_put(
                (rows, mine), torch.tensor(True)
            )
            blocks["query_to_query"] = qq.masked_fill(self_pair, -torch.inf)
        if "doc_to_query" in self.directions:
            blocks["doc_to_query"] = similarity_matrix(own_positive, all_anchors, self.similarity)
        if "doc_to_doc" in self.directions:
            dd = similarity_matrix(own_positive, candidates, self.similarity)
            same_query = (torch.arange(len(candidates), device=dd.device) % n) == mine[:, None]
            blocks["doc_to_doc"] = dd.masked_fill(same_query, -torch.inf)

        logits = {k: v * self.scale for k, v in blocks.items()}
        if self.hardness_mode is not None and self.hardness_strength > 0:
            qd = blocks["query_to_doc"].detach()
            column = torch.arange(qd.shape[1], device=qd.device)
            own = (column % n) == mine[:, None]  # own positive and own hard negatives
            hard = column >= n
            penalized = {
                "in_batch_negatives": ~own,
                "hard_negatives": own & hard,
                "all_negatives": ~(own & ~hard),
            }[self.hardness_mode]
            logits["query_to_doc"] = (
                logits["query_to_doc"] + self.hardness_strength * qd * penalized
            )

        positive = logits["query_to_doc"][rows, mine]
        if self.partition_mode == "joint":
            log_z = torch.logsumexp(torch.cat(list(logits.values()), dim=1), dim=1)
        else:
            log_z = torch.stack([torch.logsumexp(v, dim=1) for v in logits.values()]).mean(0)
        return (log_z - positive).mean()
