"""End to end: Hydra config -> train -> exported model that sentence-transformers loads."""

from __future__ import annotations

import math

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
