"""FSDP trains, evaluates and exports what DDP does (two GPUs under torchrun).

Needs two CUDA devices: Lightning's FSDPStrategy refuses CPU accelerators, and torch's
FullyShardedDataParallel itself needs a non-CPU device, so it is skipped elsewhere.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO
from dist_helpers import free_port, run_env
from test_multinode import assert_same_weights

COMMON = [
    "+experiment=smoke",
    "loss@losses.nli=mnrl_gathered",
    "model.encoder.dropout=0.0",
    "trainer.max_steps=4",
    "trainer.accelerator=gpu",
    "trainer.devices=2",
    "trainer.precision=32-true",
    "export.best=false",
]


def launch(out: Path, strategy: str) -> None:
    env = run_env(REPO, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node=2",
        f"--master-port={free_port()}",
        "-m",
        "st_lightning.train",
        *COMMON,
        f"trainer.strategy={strategy}",
        f"hydra.run.dir={out}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]


def last_eval(out: Path) -> dict[str, str]:
    return list(csv.DictReader(open(out / "eval" / "sts_tiny.csv")))[-1]


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_fsdp_trains_evaluates_and_exports_what_ddp_does(tmp_path):
    launch(tmp_path / "fsdp", "fsdp")
    launch(tmp_path / "ddp", "ddp")
    # Whole tensors (not shards), equal to DDP's.
    assert_same_weights(tmp_path / "fsdp" / "final", tmp_path / "ddp" / "final")
    # The evaluator ran under FSDP (whole parameters gathered) with DDP's metrics.
    a, b = last_eval(tmp_path / "fsdp"), last_eval(tmp_path / "ddp")
    assert a["stage"] == b["stage"] == "after"
    assert float(a["spearman_cosine"]) == pytest.approx(float(b["spearman_cosine"]), abs=1e-4)
