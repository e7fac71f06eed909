"""AnglELoss: CoSENT on the angle difference in complex space."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from st_lightning.losses.cosent import CoSENTLoss
from st_lightning.utils.checks import check_positive


def pairwise_angle_similarity(a: Tensor, b: Tensor) -> Tensor:
    """|cos(a, b) + sin(a, b)| of the L2-normalised vectors, where the sine term pairs dimension
    i with i + D/2 as the real and imaginary parts of a complex number (Li & Li, 2023). An odd
    dimension gets one zero appended."""
    if a.shape[1] % 2:
        a, b = F.pad(a, (0, 1)), F.pad(b, (0, 1))
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    a_re, a_im = a.chunk(2, dim=1)
    b_re, b_im = b.chunk(2, dim=1)
    cos = (a * b).sum(1)
    sin = (a_im * b_re - a_re * b_im).sum(1)
    return (cos + sin).abs()


class AnglELoss(CoSENTLoss):
    """Columns: (sentence1, sentence2) + float score. CoSENT with the angle similarity."""

    citation = """@misc{li2023angleoptimized,
    title={AnglE-optimized Text Embeddings}, author={Xianming Li and Jing Li},
    year={2023}, eprint={2309.12871}, archivePrefix={arXiv}
}"""

    def __init__(self, scale: float = 20.0) -> None:
        check_positive("scale", scale)
        super().__init__(scale=scale)

    def pair_scores(self, a: Tensor, b: Tensor) -> Tensor:
        return pairwise_angle_similarity(a, b)
