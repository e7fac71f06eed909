"""The llm_lora experiment end to end: a decoder with LoRA and last-token pooling trains,
only its adapters change, and the exported (merged) folder loads in sentence-transformers."""

from __future__ import annotations

import math

import numpy as np
import torch
from conftest import run_cfg

from st_lightning.export import encoder_state, read_checkpoint
from st_lightning.train import build_run, train


def test_llm_lora_trains_only_adapters_and_exports_a_loadable_model(tmp_path):
    from sentence_transformers import SentenceTransformer

    overrides = ["+experiment=llm_lora", "data.datasets.nli.split='train[:96]'",
                 "evaluator=[sts_tiny]", "trainer.precision=32-true"]  # fmt: skip
    start = {
        k: v.clone()
        for k, v in build_run(run_cfg(tmp_path / "start", overrides))
        .module.encoder.state_dict()
        .items()
    }  # noqa: E501
    metrics = train(run_cfg(tmp_path / "run", overrides))
    assert math.isfinite(metrics["train/loss"])
    trained = encoder_state(read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt"))
    changed = [k for k, v in trained.items() if not torch.equal(v, start[k])]
    assert changed and all("lora_" in k for k in changed)
    card = (tmp_path / "run" / "final" / "README.md").read_text()
    assert "Qwen3Model" in card and "lasttoken" in card
    texts = ["A man is eating food.", "Two dogs run in the park."]
    from st_lightning.encoders import SentenceEncoder

    ours = SentenceEncoder.from_pretrained(tmp_path / "run" / "final").encode(texts)
    reference = SentenceTransformer(str(tmp_path / "run" / "final"), device="cpu").encode(texts)
    np.testing.assert_allclose(reference, ours, atol=1e-5)
