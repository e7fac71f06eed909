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
from pathlib import Path

import pytest
import torch
from conftest import REPO
from dist_helpers import assert_same_weights, losses_by_step, run_env, stop_when

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

    def reached() -> bool:
        steps = [int(p.stem.split("=")[1]) for p in (out / "checkpoints").glob("step=*.ckpt")]
        return any(s >= at_step for s in steps)

    return stop_when(
        command(out), reached, lambda proc: proc.send_signal(sig), cwd=REPO, env=run_env(REPO)
    )


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
    saved = sorted((killed / "checkpoints").glob("*.ckpt"))
    # Every file loads: the kill never leaves a damaged checkpoint. last.ckpt is written just
    # after step=N.ckpt, so a kill at the first step may come before the first last.ckpt.
    steps = {p.name: checkpoint_step(p) for p in saved}
    assert max(steps.values()) >= at_step, steps
    assert not (killed / "final").exists()  # nothing exported by a run that did not finish
    # The command a requeued job runs: ckpt_path=last takes the newest of them.
    resumed = run(killed, "ckpt_path=last")
    newest = max(saved, key=lambda p: (steps[p.name], p.name == "last.ckpt"))
    assert f"ckpt_path=last: resuming from {newest}" in resumed.stdout + resumed.stderr
    assert_same_weights(killed / "final", never_stopped / "final", rtol=1e-5)
    expected, got = losses_by_step(never_stopped), losses_by_step(killed)
    assert sorted(got) == sorted(expected) == list(range(STEPS))
    for s in expected:
        assert got[s] == pytest.approx(expected[s], rel=1e-5), s


@pytest.mark.slow
def test_resumed_run_logs_the_step_its_checkpoint_ended_with(never_stopped, tmp_path):
    # Lightning saves step=3.ckpt (after step 2) before it logs step 2; a kill in between
    # loses that row, and the resumed run starts at step 3. The checkpoint carries the row.
    ckpt = never_stopped / "checkpoints" / "step=3.ckpt"
    resumed = tmp_path / "resumed"
    run(resumed, f"ckpt_path='{ckpt}'")
    expected, got = losses_by_step(never_stopped), losses_by_step(resumed)
    assert sorted(got) == list(range(2, STEPS))
    for s in got:
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


def test_ckpt_path_last_takes_the_newest_checkpoint_of_the_run(tmp_path, caplog):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from st_lightning.run import Run

    own, other = tmp_path / "checkpoints", tmp_path / "elsewhere"
    trainer = L.Trainer(callbacks=[ModelCheckpoint(dirpath=other)], logger=False)
    run = Run(trainer, None, None, None, tmp_path)  # type: ignore[arg-type]
    resume_path = run.resume_path
    with caplog.at_level("WARNING"):
        assert resume_path("last") is None  # a job's first start: no checkpoint yet
    assert "starts from the beginning" in caplog.text and str(other) in caplog.text

    def write(path: Path, mtime: int) -> None:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, ns=(mtime, mtime))

    write(own / "step=1.ckpt", 10)
    write(own / "step=2.ckpt", 20)
    write(own / "step=3.ckpt.tmp-99", 30)  # an unfinished write is never a candidate
    assert resume_path("last") == str(own / "step=2.ckpt")  # no last.ckpt yet
    write(own / "last.ckpt", 20)  # written with step=2.ckpt: the same state, named last
    assert resume_path("last") == str(own / "last.ckpt")
    write(other / "epoch=0-step=4.ckpt", 40)  # the checkpoint callback's own directory
    assert resume_path("last") == str(other / "epoch=0-step=4.ckpt")
    given = str(own / "step=1.ckpt")
    assert resume_path(given) == given  # a path is used as given
