"""Tiny random BERT encoders for fast tests and smoke runs (seconds on a CPU)."""

from __future__ import annotations

import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from st_lightning.encoders.dense import Dense
from st_lightning.encoders.hub import resolve_model_path
from st_lightning.encoders.pooling import Pooling
from st_lightning.encoders.sentence_encoder import SentenceEncoder


def tiny_encoder(
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 64,
    pooling_mode: str | list[str] = "mean",
    dense_dim: int | None = None,
    normalize: bool = False,
    max_seq_length: int = 64,
    dropout: float = 0.1,
    seed: int = 0,
    tokenizer: str = "sentence-transformers/all-MiniLM-L6-v2",
    unpadded: bool = True,
) -> SentenceEncoder:
    """A randomly initialised BERT with a real WordPiece vocabulary (all-MiniLM-L6-v2's by default).

    The weights depend only on `seed`, so two calls give identical encoders.
    """
    tok = AutoTokenizer.from_pretrained(resolve_model_path(tokenizer))
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max(max_seq_length, 64),
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = BertModel(config)  # with its pooler, as real BERT checkpoints have
        pooling = Pooling(hidden_size, pooling_mode)
        dense = [Dense(pooling.output_dimension, dense_dim)] if dense_dim else []
    return SentenceEncoder(
        backbone,
        tok,
        pooling,
        dense=dense,
        normalize=normalize,
        max_seq_length=max_seq_length,
        unpadded=unpadded,
    )
