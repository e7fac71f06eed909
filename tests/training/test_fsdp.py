"""FSDP (`trainer=fsdp`) trains, evaluates and exports what DDP does.

Two CPU processes under torchrun (gloo): FSDP2 through Lightning's ModelParallelStrategy shards
the encoder over both ranks; the same run under DDP is the reference for the loss curve, the
evaluator's metrics (computed on whole weights gathered from the shards) and the exported model
(whole tensors assembled from the shards). The same code runs on GPUs with NCCL.
"""

from __future__ import annotations

import copy
import csv
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import REPO
from dist_helpers import (
    assert_same_weights,
    free_port,
    init_gloo,
    leave_gloo,
    losses_by_step,
    run_env,
    stop_when,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor

from st_lightning.encoders import tiny_encoder
from st_lightning.utils.fsdp import gathered, shard_module

GATHERED = "loss@losses.nli=mnrl_gathered"
COMMON = [
    "+experiment=smoke",
    "model.encoder.dropout=0.0",
    "trainer.max_epochs=-1",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.precision=32-true",
    "export.best=false",
]


def torchrun(out: Path, *overrides: str, steps: int = 5) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node=2",
        f"--master-port={free_port()}",
        "-m",
        "st_lightning.train",
        *COMMON,
        f"trainer.max_steps={steps}",
        *overrides,
        f"hydra.run.dir={out}",
    ]


ENV = run_env(REPO, OMP_NUM_THREADS="1")


def launch(out: Path, *overrides: str, steps: int = 5) -> None:
    cmd = torchrun(out, *overrides, steps=steps)
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]


def eval_rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(out / "eval" / "sts_tiny.csv")))


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        [GATHERED],  # the unpadded forward: each layer's packed step gathers its shards
        [GATHERED, "model.encoder.unpadded=false"],  # the backbone's own padded forward
        [GATHERED, "model.mini_batch_size=2"],  # gradient caching (manual optimization)
        [  # LoRA adapters on the unpadded forward: the adapters are sharded with their layers
            GATHERED,
            "model.encoder.lora={r: 4, alpha: 8, dropout: 0.0, target_modules: [query, value]}",
            "export.merge_adapters=true",
        ],
        [  # a loss with weights of its own (sharded too), trained at 10x the learning rate
            "loss@losses.nli=softmax",
            "losses.nli.embedding_dimension=32",
            "data=nli_pair_class",
            "data.datasets.nli.split='train[:256]'",
            "+model.lr_multipliers.losses=10.0",
        ],
    ],
    ids=["unpadded", "padded", "gradcache", "lora", "softmax_loss"],
)
def test_fsdp_trains_evaluates_and_exports_what_ddp_does(tmp_path, overrides):
    launch(tmp_path / "fsdp", "trainer=fsdp", *overrides)
    launch(tmp_path / "ddp", "trainer.strategy=ddp", *overrides)
    # Two transformer layers, the rest of the encoder, and the classifier of SoftmaxLoss.
    units = 4 if "loss@losses.nli=softmax" in overrides else 3
    log = (tmp_path / "fsdp" / "train.log").read_text()
    assert f"FSDP: sharded the model in {units} units over 2 ranks" in log
    fsdp, ddp = losses_by_step(tmp_path / "fsdp"), losses_by_step(tmp_path / "ddp")
    assert len(fsdp) == len(ddp) == 5
    assert list(fsdp.values()) == pytest.approx(list(ddp.values()), rel=1e-4)
    # Whole tensors (not shards), equal to DDP's.
    assert_same_weights(
        tmp_path / "fsdp" / "final", tmp_path / "ddp" / "final", other_batch_layout=True
    )
    # The evaluator ran under FSDP (before and after training) with DDP's metrics.
    a, b = eval_rows(tmp_path / "fsdp"), eval_rows(tmp_path / "ddp")
    assert [r["stage"] for r in a] == [r["stage"] for r in b] == ["before", "after"]
    for x, y in zip(a, b, strict=True):
        assert float(x["spearman_cosine"]) == pytest.approx(float(y["spearman_cosine"]), abs=1e-4)


TEXTS = [f"sentence {i} about a topic" + " with more words" * (i % 4) for i in range(7)]


def shard_worker(rank: int, world: int, init_file: str, unpadded: bool) -> None:
    init_gloo(rank, world, init_file)
    reference = tiny_encoder(dropout=0.0, seed=1, dense_dim=8)
    reference.unpadded = unpadded
    reference.freeze_unused()  # the pooler (as EmbeddingModule does): no gradient to compare
    encoder = copy.deepcopy(reference)
    shard_module(encoder, [], init_device_mesh("cpu", (world,)))
    assert all(isinstance(p, DTensor) for p in encoder.parameters())
    # Each rank stores about 1/world of the weights (rows of each tensor, the last shard short).
    local = sum(p.to_local().numel() for p in encoder.parameters())
    total = sum(p.numel() for p in reference.parameters())
    assert abs(local - total / world) < 0.01 * total

    # Gathered: ranks run different numbers of forward passes (7 and 2), no collectives.
    texts = TEXTS if rank == 0 else TEXTS[:2]
    with gathered(encoder):
        got = encoder.encode(texts, batch_size=1, convert_to="tensor")
    torch.testing.assert_close(got, reference.encode(texts, batch_size=1, convert_to="tensor"))
    assert all(isinstance(p, DTensor) for p in encoder.parameters())  # sharded again

    # Training step on the shards (every layer's weights gathered in its own forward): the
    # same batch on both ranks, so the averaged gradient is the single-process gradient.
    features = encoder.tokenize(TEXTS)
    encoder(features).square().sum().backward()
    reference(features).square().sum().backward()
    grads = dict(reference.named_parameters())
    for name, p in encoder.named_parameters():
        if not p.requires_grad:
            continue
        expected = grads[name].grad
        full = p.grad.full_tensor()
        assert (full - expected).norm() <= 1e-5 * expected.norm() + 1e-7, name
    leave_gloo()


@pytest.mark.slow
@pytest.mark.parametrize("unpadded", [True, False], ids=["unpadded", "padded"])
def test_sharded_encoder_gathers_for_evaluation_and_trains_like_one_process(unpadded):
    init_file = tempfile.mktemp(prefix="st_lightning_fsdp_")
    mp.spawn(shard_worker, args=(2, init_file, unpadded), nprocs=2, join=True)


EVERY_STEP = [
    GATHERED,
    "evaluator=[]",
    "callbacks.model_checkpoint.every_n_train_steps=1",
    "callbacks.model_checkpoint.filename='{step}'",
    "callbacks.model_checkpoint.save_top_k=-1",
]


@pytest.fixture(
    scope="module", params=["trainer=fsdp", "trainer.strategy=ddp"], ids=["fsdp", "ddp"]
)
def never_stopped(request, tmp_path_factory) -> tuple[str, Path]:
    """7 steps of a 2-process run with a checkpoint at every step: epochs of 2, 3 and 2 global
    batches (no-duplicate batching makes the count vary; every epoch's batches are served)."""
    out = tmp_path_factory.mktemp("full")
    launch(out, request.param, *EVERY_STEP, steps=7)
    assert epochs_by_step(out) == [0, 0, 1, 1, 1, 2, 2]
    return request.param, out


@pytest.mark.slow
def test_two_process_checkpoint_resumes_exactly(never_stopped, tmp_path):
    """A checkpoint of a 2-process run (under FSDP: weights and sharded optimizer state
    assembled on rank 0 into one file) resumes to the same losses and weights as the run never
    stopped, across an epoch boundary."""
    strategy, full = never_stopped
    checkpoint = full / "checkpoints" / "step=3.ckpt"
    assert checkpoint.is_file()
    resumed = tmp_path / "resumed"
    launch(resumed, strategy, *EVERY_STEP, f"ckpt_path='{checkpoint}'", steps=7)
    expected, got = losses_by_step(full), losses_by_step(resumed)
    # step 2's row comes from the checkpoint (CarryStepLog: ranks averaged before saving)
    assert sorted(expected) == list(range(7)) and sorted(got) == [2, 3, 4, 5, 6]
    assert [got[s] for s in got] == pytest.approx([expected[s] for s in got], rel=1e-5)
    assert_same_weights(resumed / "final", full / "final", rtol=1e-5)


def workers(pid: int) -> list[int]:
    """The processes torchrun started."""
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.slow
@pytest.mark.parametrize("target", ["process_group", "one_worker"])
def test_sigterm_saves_and_the_same_command_resumes(never_stopped, tmp_path, target):
    """What SLURM does before preemption: SIGTERM to every process of the job (here the
    torchrun process group), or, when signals reach the ranks one by one, to one of them.
    The ranks agree on stopping after the same batch, join in writing last.ckpt (under FSDP,
    gathering the shards) and exit; the requeued command with ckpt_path=last ends with the
    losses and weights of the run never stopped."""
    strategy, full = never_stopped
    stopped = tmp_path / "stopped"

    def stop(proc: subprocess.Popen) -> None:
        if target == "process_group":
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            os.kill(workers(proc.pid)[-1], signal.SIGTERM)

    code, output = stop_when(
        torchrun(stopped, strategy, *EVERY_STEP, steps=7),
        lambda: (stopped / "checkpoints" / "step=2.ckpt").exists(),
        stop,
        cwd=REPO,
        env=ENV,
        finish_s=120,  # hung ranks fail here
    )
    assert code != 0 and "Stopped by SIGTERM" in output, output[-4000:]
    if target == "one_worker":
        assert "Stopped by SIGTERM on another rank" in output, output[-4000:]
    last = stopped / "checkpoints" / "last.ckpt"
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert 2 <= step < 7
    assert not (stopped / "final").exists()
    launch(stopped, strategy, *EVERY_STEP, "ckpt_path=last", steps=7)
    expected, got = losses_by_step(full), losses_by_step(stopped)
    assert sorted(got) == sorted(expected) == list(range(7))
    assert [got[s] for s in expected] == pytest.approx(list(expected.values()), rel=1e-5)
    assert_same_weights(stopped / "final", full / "final", rtol=1e-5)


def epochs_by_step(out: Path) -> list[int]:
    rows = csv.DictReader(open(out / "csv" / "version_0" / "metrics.csv"))
    return [int(r["epoch"]) for r in rows if r.get("train/loss")]
