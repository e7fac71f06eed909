"""Pooling against sentence-transformers' Pooling module, for rows padded on the right (encoder
tokenizers) and on the left (many decoder tokenizers), with and without the prompt pooled."""

from __future__ import annotations

import pytest
import torch

from st_lightning.encoders import Pooling

MODES = ["mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"]
LENGTHS = [7, 3, 5, 1, 7]  # real tokens per row, the longest unpadded
SEQ = 7


def batch(side: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randn(len(LENGTHS), SEQ, 8, generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros(len(LENGTHS), SEQ, dtype=torch.long)
    for i, n in enumerate(LENGTHS):
        if side == "right":
            mask[i, :n] = 1
        else:
            mask[i, SEQ - n :] = 1
    return tokens, mask


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("prompt_length", [0, 2])
def test_pooling_equals_the_reference_on_either_padding_side(side, mode, prompt_length):
    from sentence_transformers.models import Pooling as Reference

    tokens, mask = batch(side)
    include_prompt = prompt_length == 0
    ours = Pooling(8, mode, include_prompt=include_prompt)(tokens, mask, prompt_length)
    features = {"token_embeddings": tokens, "attention_mask": mask}
    if prompt_length:
        features["prompt_length"] = prompt_length
    reference = Reference(8, pooling_mode=mode, include_prompt=include_prompt)
    expected = reference(features)["sentence_embedding"]
    torch.testing.assert_close(ours, expected)


@pytest.mark.parametrize("mode", ["cls", "lasttoken", "mean", "weightedmean"])
def test_left_and_right_padding_pool_the_same_tokens(mode):
    # The same real tokens placed after left padding or before right padding pool alike.
    right_tokens, right_mask = batch("right")
    left_tokens = torch.zeros_like(right_tokens)
    _, left_mask = batch("left")
    for i, n in enumerate(LENGTHS):
        left_tokens[i, SEQ - n :] = right_tokens[i, :n]
    pool = Pooling(8, mode)
    torch.testing.assert_close(pool(left_tokens, left_mask), pool(right_tokens, right_mask))


def test_lasttoken_is_the_last_real_token_by_hand():
    tokens, mask = batch("right")
    out = Pooling(8, "lasttoken")(tokens, mask)
    for i, n in enumerate(LENGTHS):
        torch.testing.assert_close(out[i], tokens[i, n - 1])
    tokens, mask = batch("left")
    torch.testing.assert_close(Pooling(8, "lasttoken")(tokens, mask), tokens[:, -1])
