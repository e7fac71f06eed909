"""Helpers for the tests that start real process groups (gloo on CPU) with torch.multiprocessing."""

from __future__ import annotations

import csv
import datetime
import faulthandler
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import load_file

# A collective that waits longer than this fails instead of hanging the test run.
COLLECTIVE_TIMEOUT = datetime.timedelta(seconds=120)
# A worker still running after this prints every thread's stack and exits.
WORKER_DEADLINE_S = 300


def init_gloo(rank: int, world: int, init_file: str) -> None:
    """Join a gloo group on loopback through a rendezvous file, with finite timeouts."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    faulthandler.dump_traceback_later(WORKER_DEADLINE_S, exit=True, file=sys.stderr)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world,
        timeout=COLLECTIVE_TIMEOUT,
    )


def leave_gloo() -> None:
    """End a worker process once every rank is done, skipping torch's teardown of the group.

    Destroying a gloo group right after a collective can deadlock in torch 2.13: the group's
    destructor holds the GIL while it waits for a gloo thread that needs the GIL to release the
    finished collective's tensors (seen with a DistributedDataParallel reducer, whose deletion
    destroys the group). The workers have written their results to files by now.
    """
    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_on_two_nodes(
    overrides: list[str], out: Path, cwd: Path, env: dict[str, str]
) -> list[str]:
    """`python -m st_lightning.train` as two torchrun "nodes" of one CPU process each on
    127.0.0.1 (`trainer=ddp`, gloo), writing to `out/node0` and `out/node1`; returns both
    outputs once both succeeded."""
    port = free_port()
    nodes = []
    for rank in range(2):
        cmd = [
            *(sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1"),
            *(f"--node-rank={rank}", "--master-addr=127.0.0.1", f"--master-port={port}"),
            *("-m", "st_lightning.train", *overrides, "trainer=ddp", "trainer.accelerator=cpu"),
            *("trainer.devices=1", "trainer.num_nodes=2", f"hydra.run.dir={out / f'node{rank}'}"),
        ]
        nodes.append(
            subprocess.Popen(
                cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, output[-4000:]
    return outputs


def run_env(repo: Path, **extra: str) -> dict[str, str]:
    """The environment of a `python -m st_lightning.train` subprocess: repo-relative data paths,
    gloo on loopback, one thread per process (several processes share 2 cores)."""
    return {
        **os.environ,
        "ST_LIGHTNING_ROOT": str(repo),
        "GLOO_SOCKET_IFNAME": "lo",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def losses_by_step(out: Path) -> dict[int, float]:
    """train/loss by step from every CSV log version of a run folder (resumed runs add one)."""
    found: dict[int, float] = {}
    for path in sorted(out.glob("csv/version_*/metrics.csv")):
        with open(path) as f:
            for row in csv.DictReader(f):
                if row.get("train/loss"):
                    found[int(row["step"])] = float(row["train/loss"])
    return found


def assert_same_weights(
    got: Path, expected: Path, rtol: float = 1e-4, other_batch_layout: bool = False
) -> None:
    """Every weight of two exported model folders within `rtol` (relative to its tensor's norm).

    `other_batch_layout`: the runs split the same global batch differently (processes, nodes,
    FSDP vs DDP). Then the attention key biases are not compared: their gradient is zero in
    exact arithmetic (softmax ignores a shift shared by all keys), so they move only by rounding
    noise, which Adam's normalisation scales up to the learning rate; two exact runs with
    different layouts differ there and only there."""
    a = load_file(str(got / "model.safetensors"))
    b = load_file(str(expected / "model.safetensors"))
    assert a.keys() == b.keys()
    for key, value in b.items():
        assert a[key].shape == value.shape, key
        if other_batch_layout and key.endswith("attention.self.key.bias"):
            continue
        assert (a[key] - value).norm() <= rtol * value.norm() + 1e-7, key


def stop_when(
    cmd: list[str],
    ready: Callable[[], bool],
    stop: Callable[[subprocess.Popen], None],
    *,
    cwd: Path,
    env: dict[str, str],
    finish_s: float = 300,
) -> tuple[int, str]:
    """Start `cmd` in a process group of its own; once `ready()` holds, `stop(proc)` (send it
    a signal); return (exit code, output). When the test fails on the way, the whole group
    is killed, so no hung run outlives its test."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not ready():
            assert proc.poll() is None, proc.communicate()[0][-4000:]
            assert time.monotonic() < deadline, "timed out waiting for the moment to stop"
            time.sleep(0.02)
        stop(proc)
        output, _ = proc.communicate(timeout=finish_s)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, output
