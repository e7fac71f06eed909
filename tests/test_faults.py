"""Runs that clusters stop: kill -9 at a random step, and SIGTERM; both resume exactly.

Each run is a real `python -m st_lightning.train` process. The reference run is never stopped;
a stopped run resumed from its last checkpoint must end with the same weights and log the same
losses for every step.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO
from dist_helpers import assert_same_weights, losses_by_step, run_env

STEPS = 9  # 48 rows in batches of 8: the run crosses an epoch boundary
BASE = [
    "+experiment=smoke",
    "evaluator=[]",
    f"trainer.max_steps={STEPS}",
    "trainer.max_epochs=-1",
    "callbacks.model_checkpoint.every_n_train_steps=1",
    "callbacks.model_checkpoint.filename='{step}'",
    "callbacks.model_checkpoint.save_top_k=-1",
    "logger.csv.flush_logs_every_n_steps=1",  # a killed run keeps the losses it logged
    "export.best=false",
]


def command(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "st_lightning.train",
        *BASE,
        f"hydra.run.dir={out}",
        *extra,
    ]


def run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        command(out, *extra),
        cwd=REPO,
        env=run_env(REPO),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def start_and_signal(out: Path, sig: int, at_step: int) -> tuple[int, str]:
    """Start a run; send `sig` once its checkpoint for `at_step` exists; return (code, output)."""
    proc = subprocess.Popen(
        command(out),
        cwd=REPO,
        env=run_env(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300

    def reached() -> bool:
        steps = [int(p.stem.split("=")[1]) for p in (out / "checkpoints").glob("step=*.ckpt")]
        return any(s >= at_step for s in steps)

    while not reached():
        assert proc.poll() is None, f"the run ended before step {at_step}"
        assert time.monotonic() < deadline, "timed out waiting for a checkpoint"
        time.sleep(0.02)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=300)
    return proc.returncode, output


@pytest.fixture(scope="module")
def never_stopped(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("never_stopped")
    run(out)
    return out


def checkpoint_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


@pytest.mark.slow
def test_kill_9_at_a_random_step_then_resume(never_stopped, tmp_path):
    at_step = random.Random(os.getpid()).randint(1, STEPS - 2)
    killed = tmp_path / "killed"
    code, _ = start_and_signal(killed, signal.SIGKILL, at_step)
    assert code == -signal.SIGKILL
    last = killed / "checkpoints" / "last.ckpt"
    step = checkpoint_step(last)  # loads: the kill never leaves a damaged checkpoint
    assert at_step - 1 <= step < STEPS  # last.ckpt is written just after step=N.ckpt
    assert not (killed / "final").exists()  # nothing exported by a run that did not finish
    run(killed, f"ckpt_path={last}")
    assert_same_weights(killed / "final", never_stopped / "final", rtol=1e-5)
    expected, got = losses_by_step(never_stopped), losses_by_step(killed)
    assert sorted(got) == sorted(expected) == list(range(STEPS))
    for s in expected:
        assert got[s] == pytest.approx(expected[s], rel=1e-5), s


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_continues(never_stopped, tmp_path):
    stopped = tmp_path / "sigterm"
    code, stderr = start_and_signal(stopped, signal.SIGTERM, 3)
    assert code == 143, stderr[-3000:]  # 128 + SIGTERM, as schedulers expect
    last = stopped / "checkpoints" / "last.ckpt"
    assert "Stopped by SIGTERM" in stderr and str(last) in stderr
    step = checkpoint_step(last)
    assert 3 <= step < STEPS  # written at the end of the batch during which SIGTERM came
    run(stopped, f"ckpt_path={last}")
    assert_same_weights(stopped / "final", never_stopped / "final", rtol=1e-5)
    expected, got = losses_by_step(never_stopped), losses_by_step(stopped)
    for s in expected:
        assert got[s] == pytest.approx(expected[s], rel=1e-5), s
