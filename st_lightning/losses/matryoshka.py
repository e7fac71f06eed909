"""MatryoshkaLoss: train every prefix of the embedding to work on its own."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from st_lightning.losses.base import EmbeddingLoss, LossOutput, WrapperLoss


def truncate(x: Tensor, dim: int) -> Tensor:
    """The first `dim` coordinates, L2-normalised."""
    return F.normalize(x[..., :dim], p=2, dim=-1)


class MatryoshkaLoss(WrapperLoss):
    """Applies `loss` to the embeddings truncated to each of `matryoshka_dims`
    (Kusupati et al., 2022).

    Columns and labels: those of the wrapped loss. Returns one component per dimension,
    `dim_<d>` = weight * loss(truncated), whose sum is the loss. Labels that are embeddings of
    the full width (distillation) are truncated alongside.

    Args:
        loss: the loss to wrap.
        matryoshka_dims: the prefix sizes, e.g. [768, 512, 256, 128, 64].
        matryoshka_weights: one weight per dimension (default 1 each).
        n_dims_per_step: train a random subset of this many dimensions per step (-1 = all).
    """

    citation = """@misc{kusupati2024matryoshka,
    title={Matryoshka Representation Learning},
    author={Aditya Kusupati and Gantavya Bhatt and Aniket Rege and Matthew Wallingford and Aditya
    Sinha and Vivek Ramanujan and William Howard-Snyder and Kaifeng Chen and Sham Kakade and
    Prateek Jain and Ali Farhadi}, year={2024}, eprint={2205.13147}, archivePrefix={arXiv}
}"""

    def __init__(
        self,
        loss: EmbeddingLoss,
        matryoshka_dims: Sequence[int],
        matryoshka_weights: Sequence[float] | None = None,
        n_dims_per_step: int = -1,
    ) -> None:
        super().__init__()
        if not matryoshka_dims or any(int(d) < 1 for d in matryoshka_dims):
            raise ValueError(
                f"matryoshka_dims must be positive integers, got {list(matryoshka_dims)}."
            )
        weights = [1.0] * len(matryoshka_dims) if matryoshka_weights is None else matryoshka_weights
        if len(weights) != len(matryoshka_dims):
            raise ValueError(
                "matryoshka_weights must have one weight per entry of matryoshka_dims."
            )
        if n_dims_per_step == 0 or n_dims_per_step < -1:
            raise ValueError(f"n_dims_per_step must be -1 (all) or >= 1, got {n_dims_per_step}.")
        pairs = sorted(zip(matryoshka_dims, weights, strict=True), key=lambda p: -p[0])
        self.loss = loss
        self.matryoshka_dims = [int(d) for d, _ in pairs]
        self.matryoshka_weights = [float(w) for _, w in pairs]
        self.n_dims_per_step = n_dims_per_step

    def check_embedding_dimension(self, dim: int) -> None:
        too_big = [d for d in self.matryoshka_dims if d > dim]
        if too_big:
            raise ValueError(
                f"matryoshka_dims {too_big} exceed the embedding dimension {dim}; "
                f"use dimensions <= {dim}."
            )
        self.loss.check_embedding_dimension(dim)

    def selected(self) -> list[int]:
        picks = list(range(len(self.matryoshka_dims)))
        if 0 < self.n_dims_per_step < len(picks):
            picks = sorted(torch.randperm(len(picks))[: self.n_dims_per_step].tolist())
        return picks

    def forward(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> LossOutput:
        full = embeddings[0].shape[-1]
        self.check_embedding_dimension(full)
        out: dict[str, Tensor] = {}
        for i in self.selected():
            dim, weight = self.matryoshka_dims[i], self.matryoshka_weights[i]
            dim_labels = labels
            if labels is not None and labels.dim() in (2, 3) and labels.shape[-1] == full:
                dim_labels = labels[..., :dim]
            value = self.loss([truncate(x, dim) for x in embeddings], dim_labels)
            if isinstance(value, dict):
                for name, part in value.items():
                    out[f"dim_{dim}/{name}"] = weight * part
            else:
                out[f"dim_{dim}"] = weight * value
        return out
