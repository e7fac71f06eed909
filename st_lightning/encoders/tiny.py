"""Tiny random BERT encoders for fast tests and smoke runs (seconds on a CPU)."""

from __future__ import annotations

from typing import Any

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
    gradient_checkpointing: bool = False,
    lora: Any = None,
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
        # Inside the seeded block: LoRA's random A matrices depend on `seed` too.
        return SentenceEncoder(
            backbone,
            tok,
            pooling,
            dense=dense,
            normalize=normalize,
            max_seq_length=max_seq_length,
            unpadded=unpadded,
            gradient_checkpointing=gradient_checkpointing,
            lora=lora,
        )


def tiny_decoder(
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    num_kv_heads: int = 1,
    intermediate_size: int = 64,
    max_seq_length: int = 64,
    normalize: bool = True,
    seed: int = 0,
    tokenizer: str = "sentence-transformers/all-MiniLM-L6-v2",
    gradient_checkpointing: bool = False,
    lora: Any = None,
) -> SentenceEncoder:
    """A randomly initialised Qwen3-architecture decoder with last-token pooling: the shape of
    the decoder embedding models (rotary positions, grouped-query attention, causal mask),
    small enough for tests and CPU runs. Its tokenizer (all-MiniLM-L6-v2's WordPiece by
    default) ends every text with [SEP], the token the pooling reads, as a decoder's ends with
    its EOS token."""
    from transformers import Qwen3Config, Qwen3Model

    tok = AutoTokenizer.from_pretrained(resolve_model_path(tokenizer))
    config = Qwen3Config(
        vocab_size=tok.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max(max_seq_length, 64),
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.sep_token_id,
        bos_token_id=tok.cls_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = Qwen3Model(config)
        return SentenceEncoder(  # seeded too: LoRA's A matrices
            backbone,
            tok,
            Pooling(hidden_size, "lasttoken"),
            normalize=normalize,
            max_seq_length=max_seq_length,
            gradient_checkpointing=gradient_checkpointing,
            lora=lora,
        )
