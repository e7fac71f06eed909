"""The unpadded BERT forward computes the same function as the backbone's own padded forward."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import DistilBertConfig, DistilBertModel

from st_lightning import EmbeddingModule, losses
from st_lightning.data.collate import Batch
from st_lightning.encoders import SentenceEncoder, tiny_encoder, unpadded

TEXTS = [
    "a short one",
    "a much longer sentence that goes on and on for quite a few tokens, indeed it does",
    "mid length sentence here",
    "x",
    "Two men are playing chess in the park while a crowd watches them.",
]


def no_dropout(encoder: SentenceEncoder) -> SentenceEncoder:
    for module in encoder.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return encoder


def embeddings_and_grads(encoder: SentenceEncoder, features, flag: bool):
    encoder.unpadded = flag
    encoder.zero_grad()
    out = encoder(features)
    (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()
    grads = {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None}
    return out.detach(), grads


@pytest.mark.parametrize("attention_tokens", ["auto", 16])
@pytest.mark.parametrize("model", ["minilm", "tiny_cls", "tiny_pair", "tiny_left_padded"])
def test_same_embeddings_and_gradients_as_the_padded_forward(model, attention_tokens, minilm):
    if model == "minilm":
        encoder = no_dropout(copy.deepcopy(minilm)).train()
        features = encoder.tokenize(TEXTS)
    else:
        encoder = tiny_encoder(
            pooling_mode="cls" if model == "tiny_cls" else "mean", dropout=0.0
        ).train()
        if model == "tiny_left_padded":  # real tokens at the end of each row
            encoder.tokenizer.padding_side = "left"
        features = encoder.tokenize(TEXTS)
        if model == "tiny_pair":  # second segment ids, as a cross-style input would have
            features["token_type_ids"][:, 3:] = features["attention_mask"][:, 3:]
    assert unpadded.supports(encoder.transformer)
    encoder.attention_tokens = attention_tokens  # 16: attention in several length groups
    plain, plain_grads = embeddings_and_grads(encoder, features, False)
    packed, packed_grads = embeddings_and_grads(encoder, features, True)
    torch.testing.assert_close(packed, plain, rtol=1e-5, atol=1e-5)
    assert plain_grads.keys() == packed_grads.keys()
    scale = torch.sqrt(sum(g.norm() ** 2 for g in plain_grads.values()))
    for name, g in plain_grads.items():
        # Key biases get no gradient in exact arithmetic (softmax ignores a per-query shift):
        # both sides are rounding noise there, so errors are measured against the whole
        # gradient's norm.
        assert (packed_grads[name] - g).norm() <= 1e-5 * scale, name


def test_eval_mode_and_inference_agree(minilm):
    encoder = copy.deepcopy(minilm).eval()
    encoder.unpadded = True
    got = encoder.encode(TEXTS, convert_to="tensor")
    torch.testing.assert_close(got, minilm.encode(TEXTS, convert_to="tensor"), rtol=0, atol=1e-5)


def test_other_backbones_use_their_own_forward():
    config = DistilBertConfig(vocab_size=200, dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    assert not unpadded.supports(DistilBertModel(config))
    encoder = tiny_encoder()
    encoder.transformer.config.position_embedding_type = "relative_key"
    assert not unpadded.supports(encoder.transformer)


def test_training_step_with_and_without_unpadding():
    encoder = tiny_encoder(dropout=0.0, seed=5)
    loss = losses.MultipleNegativesRankingLoss()
    columns = [encoder.tokenize(TEXTS), encoder.tokenize(TEXTS[1:] + TEXTS[:1])]
    batch = Batch("d", columns, None)
    values, grads = [], []
    for flag in (False, True):
        encoder.unpadded = flag
        module = EmbeddingModule(encoder, {"d": loss}, length_group_tokens=40)
        module.zero_grad()
        value = loss(module.embedder(batch.features))
        value.backward()
        values.append(value.detach())
        grads.append(
            {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
        )
    torch.testing.assert_close(values[1], values[0], rtol=1e-5, atol=1e-6)
    scale = torch.sqrt(sum(g.norm() ** 2 for g in grads[0].values()))
    for name, g in grads[0].items():
        assert (grads[1][name] - g).norm() <= 1e-5 * scale, name


def reference_varlen(calls: list[int]):
    """A variable-length attention kernel written plainly (one attention per sequence), standing
    in on the CPU for flash-attn's or torch's CUDA kernel: same inputs, same output layout."""

    def kernel(q, k, v, cu, longest, dropout_p, scale):
        calls.append(longest)
        bounds = cu.tolist()
        assert cu.dtype == torch.int32 and longest >= max(np.diff(bounds))
        out = []
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            q_, k_, v_ = (t[start:end].transpose(0, 1) for t in (q, k, v))
            out.append(torch.nn.functional.scaled_dot_product_attention(q_, k_, v_, scale=scale))
        return torch.cat([o.transpose(0, 1) for o in out])

    return kernel


@pytest.mark.parametrize("model", ["minilm", "tiny_left_padded"])
def test_variable_length_kernel_path_equals_the_padded_forward(model, minilm, monkeypatch):
    """The packing, sequence offsets and head layout handed to a variable-length kernel (the
    path CUDA takes in bf16) give the padded forward's embeddings and gradients."""
    calls: list[int] = []
    monkeypatch.setattr(unpadded, "varlen_kernel", lambda q, dropout: reference_varlen(calls))
    if model == "minilm":
        encoder = no_dropout(copy.deepcopy(minilm)).train()
    else:
        encoder = tiny_encoder(dropout=0.0).train()
        encoder.tokenizer.padding_side = "left"
    features = encoder.tokenize(TEXTS)
    plain, plain_grads = embeddings_and_grads(encoder, features, False)
    packed, packed_grads = embeddings_and_grads(encoder, features, True)
    assert len(calls) == encoder.transformer.config.num_hidden_layers  # one call per layer
    torch.testing.assert_close(packed, plain, rtol=1e-5, atol=1e-5)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-5)


def test_variable_length_kernel_is_only_chosen_where_it_exists():
    q = torch.zeros(4, 2, 8)
    assert unpadded.varlen_kernel(q, 0.0) is None  # CPU: padded groups
    assert unpadded.varlen_kernel(q.bfloat16(), 0.0) is None
