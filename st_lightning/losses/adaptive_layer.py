"""AdaptiveLayerLoss and Matryoshka2dLoss: make the early layers of the encoder usable alone."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from st_lightning.losses.base import EmbeddingLoss, WrapperLoss
from st_lightning.losses.matryoshka import MatryoshkaLoss
from st_lightning.utils.checks import check_choice


def _total(value: Tensor | dict[str, Tensor]) -> Tensor:
    return torch.stack(list(value.values())).sum() if isinstance(value, dict) else value


class AdaptiveLayerLoss(WrapperLoss):
    """Applies `loss` to the final embeddings and to those pooled from earlier layers (2DMSE).

    Columns and labels: those of the wrapped loss. Needs `layer_embeddings`: for each hidden
    state (embedding output first, last layer last), one embedding per column
    (`SentenceEncoder.forward_layers`). Components: `last_layer` = loss(final) *
    last_layer_weight; per sampled earlier layer i, `layer_<i>` = loss(layer i) * w(i) / k *
    prior_layers_weight and, with kl_temperature > 0, `kl_layer_<i>` =
    KL(softmax(final / T) || softmax(layer_i / T)) * T * kl_div_weight (Li et al., 2024).

    Args:
        loss: the loss to apply at every layer.
        n_layers_per_step: earlier layers sampled per step (-1 or >= their number: all).
        last_layer_weight, prior_layers_weight, kl_div_weight: component weights.
        kl_temperature: temperature of the distillation from the last layer (0 = off).
        layer_weighting: w(i) = 1 ("uniform"), 1 / (1 + log(1 + i)) ("log") or 1 / (1 + i).
    """

    needs_layers: ClassVar[bool] = True
    citation = """@misc{li20242d,
    title={2D Matryoshka Sentence Embeddings}, author={Xianming Li and Zongxi Li and Jing Li and
    Haoran Xie and Qing Li}, year={2024}, eprint={2402.14776}, archivePrefix={arXiv}
}"""

    def __init__(
        self,
        loss: EmbeddingLoss,
        n_layers_per_step: int = 1,
        last_layer_weight: float = 1.0,
        prior_layers_weight: float = 1.0,
        kl_div_weight: float = 1.0,
        kl_temperature: float = 0.3,
        layer_weighting: str = "uniform",
    ) -> None:
        super().__init__()
        check_choice("layer_weighting", layer_weighting, ("uniform", "log", "linear"))
        if n_layers_per_step == 0 or n_layers_per_step < -1:
            raise ValueError(
                f"n_layers_per_step must be -1 (all) or >= 1, got {n_layers_per_step}."
            )
        if kl_temperature < 0:
            raise ValueError(f"kl_temperature must be >= 0, got {kl_temperature}.")
        self.loss = loss
        self.n_layers_per_step = n_layers_per_step
        self.last_layer_weight = last_layer_weight
        self.prior_layers_weight = prior_layers_weight
        self.kl_div_weight = kl_div_weight
        self.kl_temperature = kl_temperature
        self.layer_weighting = layer_weighting

    def layer_weight(self, i: int) -> float:
        if self.layer_weighting == "log":
            return 1.0 / (1.0 + math.log(1 + i))
        return 1.0 / (1 + i) if self.layer_weighting == "linear" else 1.0

    def forward(
        self,
        embeddings: Sequence[Tensor],
        labels: Tensor | None = None,
        layer_embeddings: Sequence[Sequence[Tensor]] | None = None,
    ) -> dict[str, Tensor]:
        if layer_embeddings is None:
            raise ValueError(
                f"{type(self).__name__} needs the embeddings of every layer "
                "(SentenceEncoder.forward_layers for each column)."
            )
        out = {"last_layer": _total(self.loss(embeddings, labels)) * self.last_layer_weight}
        earlier = len(layer_embeddings) - 1
        picks = list(range(earlier))
        if 0 < self.n_layers_per_step < earlier:
            picks = sorted(torch.randperm(earlier)[: self.n_layers_per_step].tolist())
        if self.kl_temperature > 0:
            target = F.softmax(torch.cat(list(embeddings)) / self.kl_temperature, dim=-1).detach()
        for i in picks:
            layer = list(layer_embeddings[i])
            weight = self.layer_weight(i) / len(picks) * self.prior_layers_weight
            out[f"layer_{i}"] = _total(self.loss(layer, labels)) * weight
            if self.kl_temperature > 0:
                log_p = F.log_softmax(torch.cat(layer) / self.kl_temperature, dim=-1)
                kl = F.kl_div(log_p, target, reduction="batchmean")
                out[f"kl_layer_{i}"] = kl * self.kl_temperature * self.kl_div_weight
        return out


class Matryoshka2dLoss(AdaptiveLayerLoss):
    """AdaptiveLayerLoss around a MatryoshkaLoss: every layer and every prefix of the embedding
    (2D Matryoshka Sentence Embeddings, Li et al., 2024). Arguments as in both."""

    def __init__(
        self,
        loss: EmbeddingLoss,
        matryoshka_dims: Sequence[int],
        matryoshka_weights: Sequence[float] | None = None,
        n_layers_per_step: int = 1,
        n_dims_per_step: int = 1,
        last_layer_weight: float = 1.0,
        prior_layers_weight: float = 1.0,
        kl_div_weight: float = 1.0,
        kl_temperature: float = 0.3,
        layer_weighting: str = "uniform",
    ) -> None:
        super().__init__(
            MatryoshkaLoss(loss, matryoshka_dims, matryoshka_weights, n_dims_per_step),
            n_layers_per_step=n_layers_per_step,
            last_layer_weight=last_layer_weight,
            prior_layers_weight=prior_layers_weight,
            kl_div_weight=kl_div_weight,
            kl_temperature=kl_temperature,
            layer_weighting=layer_weighting,
        )
