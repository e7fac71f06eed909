"""Two "nodes" of one process each under torchrun (gloo on 127.0.0.1) train like one process.

The smoke experiment with gathered in-batch negatives and sharded evaluation, run as
`trainer.num_nodes=2` through Lightning's own DDP and torchrun's environment, must give the
same loss curve, final weights and evaluation metrics as a single process whose batch is the
global batch (2 x the per-rank batch).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from dist_helpers import assert_same_weights, losses_by_step, run_env, train_on_two_nodes

PER_RANK = 4
COMMON = [
    "+experiment=smoke",
    "loss@losses.nli=mnrl_gathered",
    "model.encoder.dropout=0.0",  # dropout masks differ between 1 and 2 processes
    "trainer.max_steps=5",
    "trainer.max_epochs=-1",
    "export.best=false",
]


def final_metric(out: Path) -> float:
    rows = list(csv.DictReader(open(next(out.glob("eval/*.csv")))))
    return float(rows[-1]["spearman_cosine"])


@pytest.mark.slow
def test_two_nodes_under_torchrun_equal_one_process(tmp_path):
    single = tmp_path / "single"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "st_lightning.train",
            *COMMON,
            f"data.batch_size={2 * PER_RANK}",
            f"hydra.run.dir={single}",
        ],
        cwd=REPO,
        env=run_env(REPO, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    outputs = train_on_two_nodes(
        [*COMMON, f"data.batch_size={PER_RANK}", "trainer.precision=32-true"],
        tmp_path,
        REPO,
        run_env(REPO, OMP_NUM_THREADS="1"),
    )
    # Lightning's own DDP set-up, from torchrun's environment: one member per node.
    assert "MEMBER: 1/2" in outputs[0] and "MEMBER: 2/2" in outputs[1]
    node0 = tmp_path / "node0"

    expected, got = losses_by_step(single), losses_by_step(node0)
    assert sorted(got) == sorted(expected) == list(range(5))
    for step, value in expected.items():
        assert got[step] == pytest.approx(value, rel=1e-4), step
    assert_same_weights(node0 / "final", single / "final", other_batch_layout=True)
    assert final_metric(node0) == pytest.approx(final_metric(single), abs=1e-4)
    assert not (tmp_path / "node1" / "final").exists()  # only global rank 0 exports
