"""Weights the embeddings never use are not trained (DDP would refuse the step) and are saved."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import compose_cfg
from hydra.utils import instantiate
from omegaconf import OmegaConf

from st_lightning import EmbeddingModule, losses
from st_lightning.data.collate import Batch

POOLER = ["transformer.pooler.dense.weight", "transformer.pooler.dense.bias"]
TRIPLET = [
    ["A man is playing a guitar.", "Two dogs run.", "A child reads a long book in the park."],
    ["Someone plays music.", "Animals are moving.", "A kid is reading outdoors."],
    ["A woman is cooking.", "The cats sleep.", "Nobody is outside at all today."],
]


def nli_triplet_module() -> EmbeddingModule:
    """The module of `+experiment=nli_triplet`, built from its config as train.py builds it."""
    cfg = compose_cfg(["+experiment=nli_triplet"])
    model_cfg = OmegaConf.masked_copy(cfg.model, [k for k in cfg.model if k != "encoder"])
    return instantiate(
        model_cfg,
        encoder=instantiate(cfg.model.encoder),
        losses={k: instantiate(v) for k, v in cfg.losses.items()},
        _convert_="all",
    )


def batch_of(module: EmbeddingModule) -> Batch:
    return Batch("nli", [module.encoder.tokenize(column) for column in TRIPLET])


def test_no_trainable_parameter_of_an_nli_triplet_run_is_left_without_a_gradient():
    module = nli_triplet_module()
    names = {n for n, p in module.named_parameters() if not p.requires_grad}
    assert names == {f"encoder.{n}" for n in POOLER}  # all-MiniLM-L6-v2's pooler, only
    embeddings = module.embedder(batch_of(module).features)
    module.loss_for("nli")(embeddings, None).backward()
    missing = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert all(p.grad is None for n, p in module.named_parameters() if not p.requires_grad)
    trained = sum(len(g["params"]) for g in module.parameter_groups())
    assert trained == sum(1 for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize("unpadded", [True, False], ids=["unpadded", "padded"])
def test_the_probe_finds_the_pooler_on_either_forward(minilm, unpadded):
    encoder = copy.deepcopy(minilm).train()
    encoder.unpadded = unpadded
    state = torch.get_rng_state()
    assert encoder.unused_parameters() == POOLER
    assert torch.equal(torch.get_rng_state(), state)  # no dropout mask drawn
    assert encoder.training  # the probe's eval mode is undone


def test_gradient_checkpointing_does_not_hide_used_weights(minilm):
    """Checkpointed layers keep their weights out of the outer autograd graph; the probe runs
    in eval mode, where the backbone does not checkpoint."""
    encoder = copy.deepcopy(minilm).train()
    backbone = encoder.transformer
    enable = getattr(backbone, "activation_checkpointing_enable", None)
    (enable or backbone.gradient_checkpointing_enable)()
    assert getattr(backbone, "is_activation_checkpointing", None) or (
        backbone.is_gradient_checkpointing
    )
    encoder.unpadded = False  # the backbone's own forward, which checkpoints
    assert encoder.unused_parameters() == POOLER
    module = EmbeddingModule(encoder, losses.MultipleNegativesRankingLoss())
    embeddings = module.embedder(batch_of(module).features)
    module.loss_for("nli")(embeddings, None).backward()
    assert all(p.grad is not None for p in module.parameters() if p.requires_grad)


def test_the_tiny_encoder_carries_a_pooler_like_real_checkpoints(tiny):
    assert tiny.unused_parameters() == POOLER
    module = EmbeddingModule(tiny, losses.MultipleNegativesRankingLoss())
    assert not module.encoder.transformer.pooler.dense.weight.requires_grad


def test_frozen_weights_are_saved_unchanged(tiny, tmp_path):
    from safetensors.torch import load_file

    before = tiny.transformer.pooler.dense.weight.detach().clone()
    EmbeddingModule(tiny, losses.MultipleNegativesRankingLoss())
    tiny.save_pretrained(tmp_path / "model")
    saved = load_file(str(tmp_path / "model" / "model.safetensors"))
    assert torch.equal(saved["pooler.dense.weight"], before)


def test_checkpoint_from_before_the_pooler_was_frozen_is_refused_clearly(tiny):
    module = EmbeddingModule(tiny, losses.MultipleNegativesRankingLoss())
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    trained = sum(len(g["params"]) for g in module.parameter_groups())
    old = list(range(trained + 2))  # the pooler's two tensors were in the optimizer then
    checkpoint["optimizer_states"] = [{"param_groups": [{"params": old}]}]
    with pytest.raises(ValueError, match="export it"):
        module.on_load_checkpoint(checkpoint)


def test_columns_with_different_prompt_lengths_are_embedded_apart(tiny):
    """A prompt length left out of pooling is a property of a column; columns whose prompts
    differ in length are never merged into one forward with the first one's length."""
    tiny.pooling.include_prompt = False
    module = EmbeddingModule(tiny, losses.MultipleNegativesRankingLoss())
    columns = [
        tiny.tokenize(TRIPLET[0], prompt="query: "),
        tiny.tokenize(TRIPLET[1], prompt="a much longer passage prompt: "),
        tiny.tokenize(TRIPLET[2], prompt="query: "),
    ]
    assert [c["prompt_length"] for c in columns] == [3, 7, 3]  # [CLS] and the prompt
    assert module.embedder.column_sets(columns) == [[0, 2], [1]]
    tiny.eval()
    together = module.embedder(columns)
    for column, embedding in zip(columns, together, strict=True):
        torch.testing.assert_close(embedding, tiny(column), rtol=1e-5, atol=1e-6)
