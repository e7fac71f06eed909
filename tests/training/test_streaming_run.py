"""Streamed data in real runs: kill -9 then resume, DDP ranks, the minilm_replication recipe's
offline stand-in, and the settings streaming needs."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import MINILM, REPO, compose_cfg, run_cfg
from dist_helpers import assert_same_weights, losses_by_step, run_env, stop_when

from st_lightning.data import DatasetSpec, EmbeddingDataModule
from st_lightning.train import train

STEPS = 12  # 48 rows, 2 readers with 24 each, batches of 8: passes end at steps 6 and 12
STREAM = [
    "+experiment=smoke",
    "evaluator=[]",
    "+data.datasets.nli.streaming=true",
    "data.num_workers=2",
    "data.shuffle_buffer=16",
    "data.batch_sampler._target_=st_lightning.data.BatchSampler",
]
BASE = [
    *STREAM,
    f"trainer.max_steps={STEPS}",
    "callbacks.model_checkpoint.every_n_train_steps=1",
    "callbacks.model_checkpoint.filename='{step}'",
    "callbacks.model_checkpoint.save_top_k=-1",
    "logger.csv.flush_logs_every_n_steps=1",
    "export.best=false",
]


def command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "st_lightning.train", *BASE, f"hydra.run.dir={out}", *extra]


def run(out: Path, *extra: str) -> str:
    proc = subprocess.run(
        command(out, *extra), cwd=REPO, env=run_env(REPO), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("at_step", [4, 7])
def test_kill_9_mid_stream_then_resume_gives_the_same_losses_and_weights(tmp_path, at_step):
    never = tmp_path / "never"
    run(never)
    killed = tmp_path / "killed"

    def reached() -> bool:
        steps = [int(p.stem.split("=")[1]) for p in (killed / "checkpoints").glob("step=*.ckpt")]
        return any(s >= at_step for s in steps)

    code, _ = stop_when(
        command(killed), reached, lambda p: p.send_signal(signal.SIGKILL), cwd=REPO,
        env=run_env(REPO),
    )  # fmt: skip
    assert code == -signal.SIGKILL
    assert not (killed / "final").exists()
    run(killed, "ckpt_path=last")
    expected, got = losses_by_step(never), losses_by_step(killed)
    assert sorted(got) == sorted(expected) == list(range(STEPS))
    for s in expected:
        assert got[s] == pytest.approx(expected[s], rel=1e-5), s
    assert_same_weights(killed / "final", never / "final", rtol=1e-5)


def test_resume_from_a_mid_stream_checkpoint_in_process(tmp_path):
    # The in-process path of the test above (fast): a checkpoint after step 5 of 9, resumed.
    common = [*STREAM, "trainer.max_steps=9", "export.best=false", "logger=csv"]
    whole = tmp_path / "whole"
    train(run_cfg(whole, [*common, "callbacks.model_checkpoint.every_n_train_steps=5",
                          "callbacks.model_checkpoint.filename='{step}'",
                          "callbacks.model_checkpoint.save_top_k=-1"]))  # fmt: skip
    ckpt = whole / "checkpoints" / "step=5.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    data_state = next(v for k, v in state.items() if k.endswith("EmbeddingDataModule"))
    assert data_state["streaming"] and data_state["position"] == 5
    assert sorted(data_state["readers"]) == ["0", "1"]
    resumed = tmp_path / "resumed"
    train(run_cfg(resumed, [*common, f"ckpt_path='{ckpt}'"]))
    expected, got = losses_by_step(whole), losses_by_step(resumed)
    assert sorted(got) == [4, 5, 6, 7, 8]  # step 4: the checkpoint carries its log row
    for s in got:
        assert got[s] == pytest.approx(expected[s], rel=1e-5), s
    assert_same_weights(resumed / "final", whole / "final", rtol=1e-5)


@pytest.mark.slow
def test_two_ddp_ranks_stream_disjoint_rows_on_the_same_dataset_each_step(tmp_path):
    # Two gloo processes, two streamed datasets mixed by weight: the run's logged per-dataset
    # losses show one dataset per step (both ranks agree, or DDP's loss check would fail).
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "st_lightning.train", "+experiment=minilm_replication",
        "data=minilm_mix_local", "model/encoder=tiny", "trainer=ddp_sim",
        "trainer.max_steps=6", "model.warmup_steps=0", "evaluator=[]", "data.batch_size=4",
        "export.best=false", f"hydra.run.dir={out}", "logger=csv",
        "logger.csv.flush_logs_every_n_steps=1", "trainer.log_every_n_steps=1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=run_env(REPO), capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "final" / "model.safetensors").exists()
    rows = [r for p in out.glob("csv/version_*/metrics.csv") for r in csv.DictReader(open(p))]
    # The dataset of each step: the one whose loss is the step's loss (the others repeat
    # their last value). Pairs and triplets both came, with negatives gathered over the two
    # ranks: a step where the ranks held different datasets (2 vs 3 columns) cannot complete.
    used = {}
    for r in rows:
        if r.get("train/loss"):
            used[int(r["step"])] = [
                k.split("/")[2] for k, v in r.items()
                if k.startswith("train/loss/") and v == r["train/loss"]
            ]  # fmt: skip
    assert sorted(used) == list(range(6)) and all(used.values())
    kinds = {names[0] for names in used.values()}
    assert "all-nli-triplet" in kinds and kinds - {"all-nli-triplet"}


def test_the_replication_recipe_runs_offline_on_its_stand_in(tmp_path):
    cfg = run_cfg(
        tmp_path,
        [
            "+experiment=minilm_replication", "data=minilm_mix_local", "model/encoder=tiny",
            "trainer=cpu", "trainer.max_steps=4", "model.warmup_steps=0",
            "evaluator=[sts_tiny]", "data.batch_size=8", "export.best=false",
        ],
    )  # fmt: skip
    assert len(compose_cfg(["+experiment=minilm_replication"]).data.datasets) == 32
    train(cfg)
    card = (tmp_path / "final" / "README.md").read_text()
    assert "(streamed while training)" in card
    assert "* Size: 6848 training samples (streamed while training)" in card  # all-nli triplet


def test_streaming_without_max_steps_is_refused(tmp_path):
    # Refused with the config check, before any model or data loads ...
    cfg = run_cfg(tmp_path, [*STREAM, "trainer.max_steps=-1"])
    with pytest.raises(ValueError, match=r"datasets \['nli'\] stream .*set trainer.max_steps"):
        train(cfg)
    assert not (tmp_path / "final").exists()
    # ... and by the data module itself, for runs built in Python.
    dm = EmbeddingDataModule(
        {"nli": DatasetSpec(str(REPO / "tests/assets/tiny_nli.jsonl"), streaming=True)},
        tokenizer=MINILM,
    )
    dm.trainer = SimpleNamespace(max_steps=-1)  # type: ignore[assignment]
    with pytest.raises(ValueError, match="set trainer.max_steps"):
        dm.setup()
