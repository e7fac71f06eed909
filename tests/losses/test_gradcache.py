"""GradCache gives the parameter gradients of a plain step, for any loss."""

from __future__ import annotations

import pytest
import torch

from st_lightning import losses
from st_lightning.encoders import tiny_encoder
from st_lightning.losses.gradcache import cached_backward, split_features, total_loss

ANCHORS = [f"a person number {i} is doing thing {i * 7 % 5}" for i in range(12)]
POSITIVES = [f"someone {i} does task {i * 7 % 5}" + " again" * (i % 4) for i in range(12)]
NEGATIVES = [f"a cat {i} sleeps" for i in range(12)]
SCORES = torch.linspace(0, 1, 12)[torch.randperm(12, generator=torch.Generator().manual_seed(0))]

CASES = {
    "mnrl": (losses.MultipleNegativesRankingLoss(), [ANCHORS, POSITIVES, NEGATIVES], None),
    "cosent": (losses.CoSENTLoss(), [ANCHORS, POSITIVES], SCORES),
    "matryoshka_mnrl": (
        losses.MatryoshkaLoss(losses.MultipleNegativesRankingLoss(), [32, 16, 8]),
        [ANCHORS, POSITIVES, NEGATIVES],
        None,
    ),
    "softmax": (
        losses.SoftmaxLoss(embedding_dimension=32, num_labels=3),
        [ANCHORS, POSITIVES],
        torch.arange(12) % 3,
    ),
}


def grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def plain_step(encoder, loss, columns, labels, chunk_size):
    """Embed with autograd in the same mini-batches (and so the same dropout draws)."""
    embeddings = [
        torch.cat([encoder(c) for c in split_features(col, chunk_size)]) for col in columns
    ]
    value = loss(embeddings, labels)
    total_loss(value).backward()
    return total_loss(value).detach()


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dropout", [True, False])
def test_cached_step_equals_plain_step(case, dropout):
    loss, texts, labels = CASES[case]
    encoder = tiny_encoder(dropout=0.1 if dropout else 0.0, seed=7)
    encoder.train()
    columns = [encoder.tokenize(t) for t in texts]
    # Without dropout the plain step embeds the whole batch at once.
    plain_chunk = 4 if dropout else 12

    torch.manual_seed(123)
    expected = plain_step(encoder, loss, columns, labels, plain_chunk)
    expected_grads = {**grads(encoder), **{f"loss.{k}": v for k, v in grads(loss).items()}}
    after_plain = torch.get_rng_state()
    encoder.zero_grad()
    loss.zero_grad()

    torch.manual_seed(123)
    value = cached_backward(encoder, loss, columns, labels, mini_batch_size=4)
    got = {**grads(encoder), **{f"loss.{k}": v for k, v in grads(loss).items()}}
    loss.zero_grad()

    torch.testing.assert_close(total_loss(value), expected, rtol=1e-5, atol=1e-6)
    assert got.keys() == expected_grads.keys() and len(got) > 10
    for name, grad in expected_grads.items():
        # Relative to the tensor's norm: elementwise ratios of near-zero entries (key biases have
        # a zero gradient in exact arithmetic) only measure float noise.
        error = (got[name] - grad).norm()
        assert error <= 1e-4 * grad.norm() + 1e-8, (name, error.item(), grad.norm().item())
    assert torch.equal(torch.get_rng_state(), after_plain)


def test_layer_losses_are_cached_too():
    loss = losses.Matryoshka2dLoss(
        losses.MultipleNegativesRankingLoss(), [32, 16], n_layers_per_step=-1, n_dims_per_step=-1
    )
    encoder = tiny_encoder(dropout=0.0, num_layers=3, seed=2)
    columns = [encoder.tokenize(t) for t in (ANCHORS, POSITIVES)]
    per_layer = [list(g) for g in zip(*[encoder.forward_layers(c) for c in columns], strict=True)]
    expected = total_loss(loss(per_layer[-1], None, layer_embeddings=per_layer))
    expected.backward()
    plain = grads(encoder)
    encoder.zero_grad()
    value = cached_backward(encoder.forward_layers, loss, columns, None, 5, layers=True)
    torch.testing.assert_close(total_loss(value), expected.detach(), rtol=1e-5, atol=1e-6)
    for name, grad in grads(encoder).items():
        assert (grad - plain[name]).norm() <= 1e-4 * plain[name].norm() + 1e-8, name


def test_loss_scale_scales_gradients():
    encoder = tiny_encoder(dropout=0.0)
    columns = [encoder.tokenize(t) for t in (ANCHORS, POSITIVES)]
    loss = losses.MultipleNegativesRankingLoss()
    cached_backward(encoder, loss, columns, None, mini_batch_size=5)
    full = grads(encoder)
    encoder.zero_grad()
    cached_backward(encoder, loss, columns, None, mini_batch_size=5, loss_scale=0.25)
    for name, grad in grads(encoder).items():
        torch.testing.assert_close(grad, 0.25 * full[name])


def test_chunks_are_trimmed_to_their_own_length():
    encoder = tiny_encoder()
    features = encoder.tokenize(["short", "a much much longer sentence than the first one"])
    first, second = split_features(features, 1)
    assert first["input_ids"].shape[1] < second["input_ids"].shape[1]
    assert second["input_ids"].shape[1] == features["input_ids"].shape[1]


def test_bad_mini_batch_size():
    encoder = tiny_encoder()
    with pytest.raises(ValueError, match="mini_batch_size"):
        cached_backward(encoder, losses.CoSENTLoss(), [encoder.tokenize(["a"])], None, 0)
