"""W&B as a dashboard: offline runs of the smoke experiment, read back from the files W&B
wrote (its transaction log, what `wandb sync` uploads), not from a mocked wandb."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
from conftest import REPO, compose_cfg
from wandb_records import offline_runs

from st_lightning.config import check_config


def train(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB")}
    env.update(
        HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
        WANDB_MODE="offline", WANDB_SILENT="true",
    )  # fmt: skip
    cmd = [sys.executable, "-m", "st_lightning.train", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("wandb_single")
    train("+experiment=smoke", "logger=wandb", "export.wandb_artifact=true",
          f"hydra.run.dir={out}")  # fmt: skip
    (run,) = offline_runs(out)
    return out, run


def test_the_run_holds_the_resolved_config(single):
    out, run = single
    assert run.name == "smoke" and run.project == "st_lightning" and run.group == ""
    config = run.config
    assert config["experiment_name"] == "smoke"
    assert config["data"]["batch_size"] == 8
    assert config["model"]["lr"] == pytest.approx(1e-3)
    assert config["losses"]["nli"]["_target_"].endswith("MultipleNegativesRankingLoss")
    assert config["paths"]["output_dir"] == str(out)  # resolved, not ${hydra:...}


def test_the_run_holds_training_and_evaluation_metrics(single):
    out, run = single
    keys = {k for row in run.history for k in row}
    wanted = {
        "train/loss", "train/loss/nli", "train/lr", "train/samples_per_sec",
        "train/tokens_per_sec", "train/padding_fraction", "train/eta_seconds",
        "val/sts_tiny/spearman_cosine", "val/sts_tiny/pearson_cosine",
    }  # fmt: skip
    assert wanted <= keys
    # Every step's loss (log_every_n_steps=1, max_steps=4), and the learning rate schedule.
    losses = [row["train/loss"] for row in run.history if "train/loss" in row]
    assert len(losses) == 4 and all(0 < v < 10 for v in losses)
    lrs = [row["train/lr"] for row in run.history if "train/lr" in row]
    assert lrs[0] == pytest.approx(1e-3) and lrs == sorted(lrs, reverse=True)
    # The evaluator's values are the ones the run wrote to eval/sts_tiny.csv (before, after).
    with (out / "eval" / "sts_tiny.csv").open() as f:
        expected = [float(r["spearman_cosine"]) for r in csv.DictReader(f)]
    logged = [
        r["val/sts_tiny/spearman_cosine"]
        for r in run.history
        if "val/sts_tiny/spearman_cosine" in r
    ]
    assert logged == pytest.approx(expected) and len(logged) == 2
    etas = [row["train/eta_seconds"] for row in run.history if "train/eta_seconds" in row]
    assert etas[-1] == 0 and all(e >= 0 for e in etas)


def test_the_exported_model_is_an_artifact(single):
    out, run = single
    (artifact,) = run.artifacts
    assert artifact["name"] == "smoke-final" and artifact["type"] == "model"
    assert {"latest", "final"} <= set(artifact["aliases"])
    exported = sorted(
        p.relative_to(out / "final").as_posix() for p in (out / "final").rglob("*") if p.is_file()
    )
    assert artifact["files"] == exported
    assert "model.safetensors" in exported and "README.md" in exported
    # The artifact carries the final metrics: the last logged spearman (after training).
    final = [r for r in run.history if "val/sts_tiny/spearman_cosine" in r][-1]
    metadata = artifact["metadata"]["val/sts_tiny/spearman_cosine"]
    assert metadata == pytest.approx(final["val/sts_tiny/spearman_cosine"])


def test_a_multirun_is_one_group_with_the_swept_values_as_config(tmp_path):
    train("-m", "+experiment=smoke", "logger=wandb", "model.lr=1e-3,2e-3",
          f"hydra.sweep.dir={tmp_path}/sweep", "trainer.max_steps=2")  # fmt: skip
    runs = [r for job in ("0", "1") for r in offline_runs(tmp_path / "sweep" / job)]
    assert [r.name for r in runs] == ["smoke-0", "smoke-1"]
    assert runs[0].group == runs[1].group == f"{tmp_path.name}-sweep"
    # Each job's overrides, the swept value among them (the experiment choice is the run name).
    common = {"logger": "wandb", "trainer.max_steps": 2}
    assert [r.config["sweep"] for r in runs] == [
        {**common, "model.lr": 1e-3},
        {**common, "model.lr": 2e-3},
    ]
    assert [r.config["model"]["lr"] for r in runs] == [1e-3, 2e-3]


def test_an_artifact_without_the_wandb_logger_is_refused_before_loading():
    cfg = compose_cfg(["+experiment=smoke", "export.wandb_artifact=true"])
    with pytest.raises(ValueError, match="add logger=wandb"):
        check_config(cfg)
