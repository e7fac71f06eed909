"""EncoderDescription: the plain structure a checkpoint keeps, from which the encoder is rebuilt."""

from __future__ import annotations

import io
import json

import torch

from st_lightning.encoders import tiny_encoder
from st_lightning.encoders.description import EncoderDescription

TEXTS = ["query: a short one", "a somewhat longer sentence about nothing much at all"]


def rebuilt_equals(encoder):
    record = EncoderDescription.of(encoder).to_dict()
    json.dumps(record)  # plain data only
    buffer = io.BytesIO()
    torch.save({"encoder": record}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["encoder"]  # what resuming and export read
    rebuilt = EncoderDescription.from_dict(loaded).build()
    rebuilt.load_state_dict(encoder.state_dict(), strict=True)
    encoder.eval(), rebuilt.eval()
    for prompt_name in (None, *encoder.prompts):
        torch.testing.assert_close(
            torch.as_tensor(rebuilt.encode(TEXTS, prompt_name=prompt_name)),
            torch.as_tensor(encoder.encode(TEXTS, prompt_name=prompt_name)),
            rtol=0,
            atol=0,
        )
    return rebuilt


def test_a_tiny_encoder_with_dense_normalize_and_prompts_is_rebuilt_exactly():
    encoder = tiny_encoder(pooling_mode=["cls", "max"], dense_dim=8, normalize=True, seed=3)
    encoder.prompts = {"query": "query: "}
    encoder.pooling.include_prompt = False
    rebuilt = rebuilt_equals(encoder)
    assert rebuilt.embedding_dimension == 8 and rebuilt.normalize
    assert rebuilt.pooling.modes == ["cls", "max"] and not rebuilt.pooling.include_prompt
    assert rebuilt.prompts == {"query": "query: "} and rebuilt.max_seq_length == 64


def test_all_minilm_l6_v2_is_rebuilt_exactly(minilm):
    rebuilt = rebuilt_equals(minilm)
    assert type(rebuilt.transformer) is type(minilm.transformer)
    assert rebuilt.max_seq_length == minilm.max_seq_length
