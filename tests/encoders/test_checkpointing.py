"""Gradient checkpointing computes the plain forward's loss and gradients (dropout on), on the
unpadded BERT path, the padded path and a decoder, and under gradient caching."""

from __future__ import annotations

import pytest
import torch
from test_families import TEXTS, family_encoder

from st_lightning import losses
from st_lightning.encoders import tiny_encoder
from st_lightning.losses.gradcache import cached_backward, total_loss

ANCHORS = [f"a person number {i} is doing thing {i * 7 % 5}" for i in range(8)]
POSITIVES = [f"someone {i} does task {i * 7 % 5}" + " again" * (i % 4) for i in range(8)]


def step(encoder, checkpointing: bool, cached: bool = False) -> tuple[float, dict]:
    encoder.set_gradient_checkpointing(checkpointing)
    encoder.zero_grad()
    loss = losses.MultipleNegativesRankingLoss()
    columns = [encoder.tokenize(ANCHORS), encoder.tokenize(POSITIVES)]
    torch.manual_seed(11)
    if cached:
        value = total_loss(cached_backward(encoder, loss, columns, None, mini_batch_size=3))
    else:
        value = total_loss(loss([encoder(c) for c in columns], None))
        value.backward()
    grads = {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None}
    return float(value.detach()), grads


def assert_same(a, b, minimum: int = 10):
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) >= minimum
    for name in grads_a:
        error = (grads_a[name] - grads_b[name]).norm()
        assert error <= 1e-5 * grads_a[name].norm() + 1e-8, name


@pytest.mark.parametrize("unpadded", [True, False])
@pytest.mark.parametrize("cached", [False, True])
def test_checkpointing_gives_the_plain_loss_and_gradients(unpadded, cached):
    encoder = tiny_encoder(dropout=0.1, seed=3, unpadded=unpadded).train()
    assert_same(step(encoder, False, cached), step(encoder, True, cached))


def test_checkpointing_a_decoder(tmp_path):
    encoder = family_encoder("qwen3", tmp_path).train()
    assert_same(step(encoder, False), step(encoder, True))


@pytest.mark.parametrize("unpadded", [True, False])
def test_checkpointing_keeps_fewer_activations(unpadded):
    # Saved tensors of the autograd graph: the layers' inner activations are not kept.
    encoder = tiny_encoder(dropout=0.0, seed=3, num_layers=4, unpadded=unpadded).train()
    features = encoder.tokenize(TEXTS * 4)

    def saved_bytes(checkpointing: bool) -> int:
        encoder.set_gradient_checkpointing(checkpointing)
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            encoder(features).sum()
        return total

    assert saved_bytes(True) < 0.5 * saved_bytes(False)


def test_checkpointing_is_refused_for_a_backbone_without_it(tiny):
    tiny.transformer.supports_gradient_checkpointing = False
    with pytest.raises(ValueError, match="does not support gradient checkpointing"):
        tiny.set_gradient_checkpointing(True)
