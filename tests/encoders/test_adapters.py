"""LoRA adapters (peft): only adapter weights train; the adapter folder and the merged folder
load in sentence-transformers with identical embeddings; bad target modules are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_families import TEXTS, family_encoder

from st_lightning import losses
from st_lightning.encoders import SentenceEncoder, tiny_encoder

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["query", "value"]}
DECODER_LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


@pytest.fixture
def base_folder(tmp_path):
    """A saved tiny BERT: the base model an adapter folder names."""
    return tiny_encoder(seed=2, dropout=0.0).save_pretrained(tmp_path / "base")


def trained(encoder: SentenceEncoder, steps: int = 3) -> SentenceEncoder:
    """A few optimizer steps of MNRL, so the adapter differs from its zero start."""
    optimizer = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=1e-2)
    loss = losses.MultipleNegativesRankingLoss()
    columns = [encoder.tokenize(TEXTS), encoder.tokenize(TEXTS[::-1])]
    encoder.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss([encoder(c) for c in columns], None).backward()
        optimizer.step()
    return encoder.eval()


def test_only_adapter_weights_train(base_folder):
    encoder = SentenceEncoder.from_pretrained(base_folder, lora=LORA)
    trainable = [n for n, p in encoder.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    frozen_before = {n: p.clone() for n, p in encoder.named_parameters() if not p.requires_grad}
    trained(encoder)
    for name, value in encoder.named_parameters():
        if name in frozen_before:
            assert torch.equal(value, frozen_before[name]), name
    # r * (in + out) per adapted matrix: query and value in 2 layers of 32x32.
    assert sum(encoder.state_dict()[n].numel() for n in trainable) == 2 * 2 * 4 * (32 + 32)


@pytest.mark.parametrize("unpadded", [True, False])
def test_the_adapter_folder_loads_in_the_reference_with_identical_embeddings(
    base_folder, tmp_path, unpadded
):
    from sentence_transformers import SentenceTransformer

    encoder = trained(SentenceEncoder.from_pretrained(base_folder, lora=LORA, unpadded=unpadded))
    assert encoder.runs_unpadded() == unpadded  # the fast path sees through the adapter
    ours = encoder.encode(TEXTS)
    folder = encoder.save_pretrained(tmp_path / "adapter")
    assert (folder / "adapter_config.json").exists() and (
        folder / "adapter_model.safetensors"
    ).exists()
    assert not (folder / "model.safetensors").exists()  # the base weights stay in the base
    reference = SentenceTransformer(str(folder), device="cpu")
    np.testing.assert_allclose(reference.encode(TEXTS), ours, atol=1e-5)
    back = SentenceEncoder.from_pretrained(folder).eval()
    assert back.has_adapter
    np.testing.assert_allclose(back.encode(TEXTS), ours, atol=1e-5)


def test_the_merged_folder_loads_in_the_reference_with_identical_embeddings(base_folder, tmp_path):
    from sentence_transformers import SentenceTransformer

    encoder = trained(SentenceEncoder.from_pretrained(base_folder, lora=LORA))
    ours = encoder.encode(TEXTS)
    folder = encoder.save_pretrained(tmp_path / "merged", merge_adapters=True)
    assert not (folder / "adapter_config.json").exists()
    np.testing.assert_allclose(
        SentenceTransformer(str(folder), device="cpu").encode(TEXTS), ours, atol=1e-5
    )  # noqa: E501
    assert encoder.has_adapter  # merging worked on a copy; the encoder keeps its adapter


def test_a_decoder_with_lora_and_lasttoken_pooling(tmp_path):
    from sentence_transformers import SentenceTransformer

    base = family_encoder("qwen3", tmp_path)
    base_folder = base.save_pretrained(tmp_path / "qwen3")
    encoder = trained(SentenceEncoder.from_pretrained(base_folder, lora=DECODER_LORA))
    assert encoder.pooling.modes == ["lasttoken"]
    folder = encoder.save_pretrained(tmp_path / "qwen3-adapter")
    np.testing.assert_allclose(
        SentenceTransformer(str(folder), device="cpu").encode(TEXTS),
        encoder.encode(TEXTS),
        atol=1e-5,
    )


def test_target_modules_that_match_nothing_are_refused_with_the_real_names(base_folder):
    with pytest.raises(ValueError, match=r"match no linear layer.*'query'"):
        SentenceEncoder.from_pretrained(base_folder, lora={**LORA, "target_modules": ["q_proj"]})


def test_an_adapter_on_a_base_without_a_name_needs_merging(tmp_path):
    encoder = tiny_encoder(lora=LORA)  # built in memory: no folder or Hub id to name
    with pytest.raises(ValueError, match="merge_adapters"):
        encoder.save_pretrained(tmp_path / "x")
    assert not (tmp_path / "x").exists()  # nothing half-written
    encoder.save_pretrained(tmp_path / "x", merge_adapters=True)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradient_caching_with_adapters_equals_the_plain_step(base_folder, checkpointing):
    from st_lightning.losses.gradcache import cached_backward, split_features, total_loss

    encoder = SentenceEncoder.from_pretrained(base_folder, lora={**LORA, "dropout": 0.1}).train()
    encoder.set_gradient_checkpointing(checkpointing)
    loss = losses.MultipleNegativesRankingLoss()
    columns = [encoder.tokenize(TEXTS * 3), encoder.tokenize(TEXTS[::-1] * 3)]

    def grads():
        out = {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None}
        encoder.zero_grad()
        return out

    # The plain step embeds in the same mini-batches, so it draws the same dropout masks.
    torch.manual_seed(5)
    embeddings = [torch.cat([encoder(c) for c in split_features(col, 3)]) for col in columns]
    plain = total_loss(loss(embeddings, None))
    plain.backward()
    expected = grads()
    torch.manual_seed(5)
    cached = total_loss(cached_backward(encoder, loss, columns, None, mini_batch_size=3))
    got = grads()
    torch.testing.assert_close(cached, plain.detach(), rtol=1e-5, atol=1e-6)
    assert len(expected) == 8 and all("lora_" in n for n in expected)  # A and B, 4 matrices
    for name, grad in expected.items():
        assert (got[name] - grad).norm() <= 1e-4 * grad.norm() + 1e-8, name


def test_a_seeded_tiny_encoder_gets_the_same_adapter():
    torch.manual_seed(1)
    a = tiny_encoder(seed=4, lora=LORA).state_dict()
    torch.manual_seed(2)  # the global RNG does not matter, the seed does
    b = tiny_encoder(seed=4, lora=LORA).state_dict()
    c = tiny_encoder(seed=5, lora=LORA).state_dict()
    lora_keys = [k for k in a if "lora_A" in k]
    assert lora_keys and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in lora_keys)
