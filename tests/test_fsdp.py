"""FSDP trains, evaluates and exports what DDP does (two CPU processes under torchrun, gloo)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from safetensors.torch import load_file
from test_multinode import free_port

COMMON = [
    "+experiment=smoke",
    "loss@losses.nli=mnrl_gathered",
    "model.encoder.dropout=0.0",
    "trainer.max_steps=4",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.precision=32-true",
    "export.best=false",
]


def launch(out: Path, strategy: str) -> str:
    env = {
        **os.environ,
        "ST_LIGHTNING_ROOT": str(REPO),
        "GLOO_SOCKET_IFNAME": "lo",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
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
    return proc.stdout + proc.stderr


def last_eval(out: Path) -> dict[str, str]:
    return list(csv.DictReader(open(out / "eval" / "sts_tiny.csv")))[-1]


@pytest.mark.slow
def test_fsdp_trains_evaluates_and_exports_what_ddp_does(tmp_path):
    fsdp_log = launch(tmp_path / "fsdp", "{_target_:cpu_fsdp.CPUFSDPStrategy}")
    assert "FullyShardedDataParallel" in fsdp_log or "FSDP" in fsdp_log
    launch(tmp_path / "ddp", "ddp")
    fsdp = load_file(str(tmp_path / "fsdp" / "final" / "model.safetensors"))
    ddp = load_file(str(tmp_path / "ddp" / "final" / "model.safetensors"))
    assert fsdp.keys() == ddp.keys()
    for key, value in ddp.items():
        assert fsdp[key].shape == value.shape, key  # whole tensors, not shards
        assert (fsdp[key] - value).norm() <= 1e-4 * value.norm() + 1e-6, key
    # The evaluator ran under FSDP (whole parameters gathered) with DDP's metrics.
    a, b = last_eval(tmp_path / "fsdp"), last_eval(tmp_path / "ddp")
    assert a["stage"] == b["stage"] == "after"
    assert float(a["spearman_cosine"]) == pytest.approx(float(b["spearman_cosine"]), abs=1e-4)
