"""End to end: Hydra config -> train -> exported model that sentence-transformers loads."""

from __future__ import annotations

import math

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from test_configs import compose_cfg

from st_lightning.train import train


def run_cfg(tmp_path, overrides: list[str]):
    cfg = compose_cfg(overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
        cfg.hydra.job.num = 0
        cfg.hydra.job.id = "test"
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_smoke_trains_evaluates_and_exports(tmp_path):
    from sentence_transformers import SentenceTransformer

    cfg = run_cfg(tmp_path, ["+experiment=smoke"])
    metrics = train(cfg)
    assert math.isfinite(metrics["train/loss"])
    assert "val/sts_tiny/spearman_cosine" in metrics
    model = SentenceTransformer(str(tmp_path / "final"), device="cpu")
    assert model.encode(["a sentence"]).shape == (1, 32)
    card = (tmp_path / "final" / "README.md").read_text()
    for section in (
        "## Model details",
        "## Usage",
        "## Evaluation",
        "### Training datasets",
        "## Citation",
    ):
        assert section in card
    assert (tmp_path / "config.yaml").exists() and (tmp_path / "eval" / "sts_tiny.csv").exists()
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()


# Per experiment: what makes it run in seconds (a tiny model, little data, a few steps).
FAST = ["model/encoder=tiny", "trainer=default", "trainer.max_steps=2", "evaluator=[sts_tiny]"]
SHRINK = {
    "nli_triplet": ["data.datasets.nli.split='train[:64]'"],
    "sts_cosent": [
        "data.datasets.stsb.split='train[:64]'",
        "callbacks.model_checkpoint.monitor=null",
    ],
    "nli_softmax": ["data.datasets.nli.split='train[:64]'", "losses.nli.embedding_dimension=32"],
    "multi_dataset": [
        *[
            f"data.datasets.{d}.split='train[:40]'"
            for d in (
                "all-nli-pair",
                "all-nli-pair-class",
                "all-nli-pair-score",
                "all-nli-triplet",
                "stsb",
                "quora",
                "natural-questions",
            )
        ],
        "losses.all-nli-pair-class.embedding_dimension=32",
    ],
    "matryoshka_nli": [
        "data.datasets.nli.split='train[:64]'",
        "losses.nli.matryoshka_dims=[32,16,8]",
        "~evaluator.sts_test_64",
    ],
    "quora_duplicates": ["data.datasets.quora.split='train[:64]'"],
    "distillation": [
        "data.datasets.distill.split='train[:64]'",
        "+model.encoder.dense_dim=384",
        "~model.encoder.model_kwargs",
    ],
}


@pytest.mark.parametrize("name", sorted(SHRINK))
def test_every_experiment_runs(name, tmp_path):
    cfg = run_cfg(tmp_path, [f"+experiment={name}", *FAST, *SHRINK[name]])
    metrics = train(cfg)
    assert math.isfinite(metrics["train/loss"]) and "val/sts_tiny/spearman_cosine" in metrics
    assert (tmp_path / "final" / "modules.json").exists()
