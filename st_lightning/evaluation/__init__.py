"""Evaluators: pure metrics over embeddings, and the Lightning callback that runs them."""

from st_lightning.evaluation.base import Evaluator, TextGroup
from st_lightning.evaluation.binary import BinaryClassificationEvaluator
from st_lightning.evaluation.callback import EvaluatorCallback
from st_lightning.evaluation.label_accuracy import LabelAccuracyEvaluator
from st_lightning.evaluation.mse import MSEEvaluator
from st_lightning.evaluation.paraphrase_mining import ParaphraseMiningEvaluator
from st_lightning.evaluation.reranking import RerankingEvaluator
from st_lightning.evaluation.retrieval import InformationRetrievalEvaluator
from st_lightning.evaluation.sequential import SequentialEvaluator
from st_lightning.evaluation.sts import EmbeddingSimilarityEvaluator
from st_lightning.evaluation.translation import TranslationEvaluator
from st_lightning.evaluation.triplet import TripletEvaluator

__all__ = [
    "BinaryClassificationEvaluator",
    "EmbeddingSimilarityEvaluator",
    "Evaluator",
    "EvaluatorCallback",
    "InformationRetrievalEvaluator",
    "LabelAccuracyEvaluator",
    "MSEEvaluator",
    "ParaphraseMiningEvaluator",
    "RerankingEvaluator",
    "SequentialEvaluator",
    "TextGroup",
    "TranslationEvaluator",
    "TripletEvaluator",
]
