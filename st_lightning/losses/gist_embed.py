"""GISTEmbedLoss: in-batch negatives with a guide model that masks likely false negatives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from st_lightning.losses.base import EmbeddingLoss
from st_lightning.losses.distributed import gather_with_grad, world
from st_lightning.similarity import similarity_matrix
from st_lightning.utils.checks import check_choice, check_positive


class GISTEmbedLoss(EmbeddingLoss):
    """Columns: (anchor, positive[, negative]); no label (Solatorio, 2024).

    Like MultipleNegativesRankingLoss with cosine similarity over anchor-positive, and optionally
    anchor-anchor, positive-positive and anchor-negative candidates, except that a candidate the
    guide model finds more similar to the anchor than the anchor's own positive (less a margin)
    is treated as a false negative and left out of the softmax.

    The guide's embeddings of the same texts come in as `guide_embeddings` (one tensor per
    column, no gradient); `embed_guide(texts)` computes them with the `guide` encoder, which
    is frozen and is not a submodule (it is neither trained nor saved in checkpoints).

    Args:
        guide: a frozen `SentenceEncoder` (or None when guide embeddings are passed in).
        temperature: softmax temperature (0.01 = scale 100).
        margin_strategy: "absolute" (guide_sim > pos_sim - margin) or "relative"
            (guide_sim > pos_sim - |pos_sim| * margin) marks a false negative.
        margin: see `margin_strategy`.
        contrast_anchors / contrast_positives: add anchor-anchor / positive-positive candidates.
        gather_across_devices: positives and negatives of every rank become candidates.
    """

    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[int | None] = 3
    needs_guide: ClassVar[bool] = True
    citation = """@misc{solatorio2024gistembed,
    title={GISTEmbed: Guided In-sample Selection of Training Negatives for Text Embedding
    Fine-tuning}, author={Aivin V. Solatorio}, year={2024}, eprint={2402.16829},
    archivePrefix={arXiv}
}"""

    def __init__(
        self,
        guide: Any = None,
        temperature: float = 0.01,
        margin_strategy: str = "absolute",
        margin: float = 0.0,
        contrast_anchors: bool = True,
        contrast_positives: bool = True,
        gather_across_devices: bool = False,
    ) -> None:
        super().__init__()
        check_positive("temperature", temperature)
        check_choice("margin_strategy", margin_strategy, ("absolute", "relative"))
        if guide is not None:
            guide.requires_grad_(False)
        self.guide_encoder: Any
        object.__setattr__(self, "guide_encoder", guide)  # not a submodule on purpose
        self.temperature = temperature
        self.margin_strategy = margin_strategy
        self.margin = margin
        self.contrast_anchors = contrast_anchors
        self.contrast_positives = contrast_positives
        self.gather_across_devices = gather_across_devices

    @torch.no_grad()
    def embed_guide(self, columns: Sequence[Sequence[str]], device: torch.device) -> list[Tensor]:
        """The guide's embeddings of each column's texts, on `device`."""
        guide = self.guide_encoder
        if guide is None:
            raise ValueError("GISTEmbedLoss has no guide encoder; pass guide=SentenceEncoder(...).")
        guide.to(device)
        return [guide.encode(list(t), batch_size=len(t), convert_to="tensor") for t in columns]

    def masked(
        self, sims: Tensor, guided: Tensor, guided_pos: Tensor, keep: Tensor | None
    ) -> Tensor:
        if self.margin_strategy == "absolute":
            false_negative = guided > guided_pos - self.margin
        else:
            false_negative = guided > guided_pos - guided_pos.abs() * self.margin
        if keep is not None:
            false_negative &= ~keep
        return sims.masked_fill(false_negative, -torch.inf)

    def forward(
        self,
        embeddings: Sequence[Tensor],
        labels: Tensor | None = None,
        guide_embeddings: Sequence[Tensor] | None = None,
    ) -> Tensor:
        if guide_embeddings is None or len(guide_embeddings) != len(embeddings):
            raise ValueError("GISTEmbedLoss needs the guide's embeddings of every column.")
        anchor, positive, *negative = embeddings
        g_anchor, g_positive, *g_negative = (g.detach() for g in guide_embeddings)
        b = anchor.shape[0]
        offset = 0
        if self.gather_across_devices:
            offset = world()[0] * b
            positive, g_positive = gather_with_grad(positive), gather_with_grad(g_positive)
            negative = [gather_with_grad(n) for n in negative]
            g_negative = [gather_with_grad(n) for n in g_negative]
        rows = torch.arange(b, device=anchor.device)
        mine = rows + offset

        def cos(x: Tensor, y: Tensor) -> Tensor:
            return similarity_matrix(x, y, "cosine")

        guided_ap = cos(g_anchor, g_positive)
        guided_pos = guided_ap[rows, mine][:, None]
        own = torch.zeros_like(guided_ap, dtype=torch.bool)
        own[rows, mine] = True
        blocks = [self.masked(cos(anchor, positive), guided_ap, guided_pos, own)]
        if self.contrast_anchors:
            blocks.append(
                self.masked(cos(anchor, anchor), cos(g_anchor, g_anchor), guided_pos, None)
            )
        if self.contrast_positives:
            local_p, local_gp = positive[offset : offset + b], g_positive[offset : offset + b]
            blocks.append(
                self.masked(cos(local_p, positive), cos(local_gp, g_positive), guided_pos, None)
            )
        for n, g_n in zip(negative, g_negative, strict=True):
            blocks.append(self.masked(cos(anchor, n), cos(g_anchor, g_n), guided_pos, None))
        return F.cross_entropy(torch.cat(blocks, dim=1) / self.temperature, mine)
