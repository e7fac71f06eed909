"""Losses: pure functions of column embeddings (and labels), one per file."""

from st_lightning.losses.adaptive_layer import AdaptiveLayerLoss, Matryoshka2dLoss
from st_lightning.losses.angle import AnglELoss
from st_lightning.losses.base import EmbeddingLoss
from st_lightning.losses.batch_all_triplet import BatchAllTripletLoss
from st_lightning.losses.batch_hard_soft_margin_triplet import BatchHardSoftMarginTripletLoss
from st_lightning.losses.batch_hard_triplet import BatchHardTripletLoss
from st_lightning.losses.batch_semi_hard_triplet import BatchSemiHardTripletLoss
from st_lightning.losses.contrastive import ContrastiveLoss
from st_lightning.losses.cosent import CoSENTLoss
from st_lightning.losses.cosine_similarity import CosineSimilarityLoss
from st_lightning.losses.distill_kl_div import DistillKLDivLoss
from st_lightning.losses.embed_distill import EmbedDistillLoss, MSELoss
from st_lightning.losses.gist_embed import GISTEmbedLoss
from st_lightning.losses.global_orthogonal_regularization import GlobalOrthogonalRegularizationLoss
from st_lightning.losses.margin_mse import MarginMSELoss
from st_lightning.losses.matryoshka import MatryoshkaLoss
from st_lightning.losses.mega_batch_margin import MegaBatchMarginLoss
from st_lightning.losses.multiple_negatives_ranking import MultipleNegativesRankingLoss
from st_lightning.losses.multiple_negatives_symmetric_ranking import (
    MultipleNegativesSymmetricRankingLoss,
)
from st_lightning.losses.online_contrastive import OnlineContrastiveLoss
from st_lightning.losses.softmax import SoftmaxLoss
from st_lightning.losses.triplet import TripletLoss

__all__ = [
    "AdaptiveLayerLoss",
    "AnglELoss",
    "BatchAllTripletLoss",
    "BatchHardSoftMarginTripletLoss",
    "BatchHardTripletLoss",
    "BatchSemiHardTripletLoss",
    "CoSENTLoss",
    "ContrastiveLoss",
    "CosineSimilarityLoss",
    "DistillKLDivLoss",
    "EmbedDistillLoss",
    "EmbeddingLoss",
    "GISTEmbedLoss",
    "GlobalOrthogonalRegularizationLoss",
    "MSELoss",
    "MarginMSELoss",
    "Matryoshka2dLoss",
    "MatryoshkaLoss",
    "MegaBatchMarginLoss",
    "MultipleNegativesRankingLoss",
    "MultipleNegativesSymmetricRankingLoss",
    "OnlineContrastiveLoss",
    "SoftmaxLoss",
    "TripletLoss",
]
