"""Sentence encoders: transformer + pooling, in and out of the sentence-transformers layout."""

from st_lightning.encoders.adapters import LoraSettings
from st_lightning.encoders.dense import Dense
from st_lightning.encoders.hub import PACKAGED_MODELS, resolve_model_path
from st_lightning.encoders.pooling import POOLING_MODES, Pooling
from st_lightning.encoders.sentence_encoder import SentenceEncoder
from st_lightning.encoders.tiny import tiny_decoder, tiny_encoder

__all__ = [
    "POOLING_MODES",
    "PACKAGED_MODELS",
    "Dense",
    "LoraSettings",
    "Pooling",
    "SentenceEncoder",
    "resolve_model_path",
    "tiny_decoder",
    "tiny_encoder",
]
