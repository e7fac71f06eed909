"""AdaptiveLayerLoss and Matryoshka2dLoss against sentence-transformers on the same tiny model."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer import losses as st

from st_lightning import losses as ours
from st_lightning.encoders import tiny_encoder

TEXTS = [
    [f"question {i} about subject {i % 3}" for i in range(6)],
    [f"an answer to {i}" + " really" * (i % 3) for i in range(6)],
    [f"something else entirely {i}" for i in range(6)],
]


def transformer_grads(named_params, prefix: str) -> dict[str, torch.Tensor]:
    return {
        n.removeprefix(prefix): p.grad
        for n, p in named_params
        if p.grad is not None and n.startswith(prefix)
    }


CASES = {
    "adaptive_mnrl_uniform": (
        lambda: ours.AdaptiveLayerLoss(ours.MultipleNegativesRankingLoss(), n_layers_per_step=-1),
        lambda m: st.AdaptiveLayerLoss(m, st.MultipleNegativesRankingLoss(m), n_layers_per_step=-1),
    ),
    "adaptive_mnrl_log_weights": (
        lambda: ours.AdaptiveLayerLoss(
            ours.MultipleNegativesRankingLoss(),
            n_layers_per_step=-1,
            last_layer_weight=2.0,
            prior_layers_weight=0.5,
            kl_div_weight=3.0,
            kl_temperature=0.7,
            layer_weighting="log",
        ),
        lambda m: st.AdaptiveLayerLoss(
            m,
            st.MultipleNegativesRankingLoss(m),
            n_layers_per_step=-1,
            last_layer_weight=2.0,
            prior_layers_weight=0.5,
            kl_div_weight=3.0,
            kl_temperature=0.7,
            layer_weighting="log",
        ),
    ),
    "matryoshka_2d": (
        lambda: ours.Matryoshka2dLoss(
            ours.MultipleNegativesRankingLoss(),
            [32, 16, 8],
            n_layers_per_step=-1,
            n_dims_per_step=-1,
        ),
        lambda m: st.Matryoshka2dLoss(
            m,
            st.MultipleNegativesRankingLoss(m),
            [32, 16, 8],
            n_layers_per_step=-1,
            n_dims_per_step=-1,
        ),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_layer_losses_match_sentence_transformers(case, tmp_path):
    make_ours, make_ref = CASES[case]
    encoder = tiny_encoder(dropout=0.0, num_layers=3, seed=4)
    reference = SentenceTransformer(str(encoder.save_pretrained(tmp_path / "m")), device="cpu")
    reference.train()
    encoder.train()
    columns = [encoder.tokenize(t) for t in TEXTS]

    layers = [encoder.forward_layers(f) for f in columns]  # per column, per layer
    per_layer = [list(group) for group in zip(*layers, strict=True)]
    value = make_ours()(per_layer[-1], None, layer_embeddings=per_layer)
    total = torch.stack(list(value.values())).sum()
    total.backward()

    expected = make_ref(reference)([dict(f) for f in columns], None)
    expected.backward()

    torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-6)
    mine = transformer_grads(encoder.named_parameters(), "transformer.")
    ref = transformer_grads(reference.named_parameters(), "0.model.")
    assert mine.keys() == ref.keys() and len(mine) > 10
    for name, grad in ref.items():
        error = (mine[name] - grad).norm()
        assert error <= 1e-4 * grad.norm() + 1e-8, (name, error.item())


def test_layer_components_and_sampling():
    encoder = tiny_encoder(dropout=0.0, num_layers=4)
    columns = [encoder.tokenize(t) for t in TEXTS[:2]]
    per_layer = [list(g) for g in zip(*[encoder.forward_layers(f) for f in columns], strict=True)]
    assert len(per_layer) == 5
    torch.testing.assert_close(per_layer[-1][0], encoder(columns[0]))
    loss = ours.AdaptiveLayerLoss(ours.MultipleNegativesRankingLoss(), n_layers_per_step=2)
    value = loss(per_layer[-1], None, layer_embeddings=per_layer)
    assert "last_layer" in value and sum(k.startswith("layer_") for k in value) == 2
    with pytest.raises(ValueError, match="every layer"):
        loss(per_layer[-1], None)
