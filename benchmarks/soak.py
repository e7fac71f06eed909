"""Soak test: many epochs of a real training run; resident memory and epoch time per epoch.

    python benchmarks/soak.py [--epochs 30] [--rows 2048]

A tiny BERT (the smoke model) trains with MNRL on the first `--rows` bundled NLI triplets
(no-duplicates batches of 32), with the STS-B dev evaluator after every epoch and the default
callbacks (checkpoint every epoch, learning-rate and throughput logging, CSV logger): every
part of the pipeline runs once per epoch, while the model's compute stays small enough that
the pipeline's own costs would show. Per epoch it records the process's resident memory (RSS)
and the epoch's wall time; the table compares the first epoch, the second and the last.
Writes benchmarks/results/soak.{json,md}.

Training caps oneDNN's kernel cache (`st_lightning.utils.memory`); to see the run without the cap:

    ONEDNN_PRIMITIVE_CACHE_CAPACITY=1024 python benchmarks/soak.py --epochs 60 \
        --out benchmarks/results/soak_kernel_cache_1024

`--python-heap` traces Python allocations (is anything kept per step?) and `--trim` returns
freed heap to the system before each reading (retained free memory vs live memory).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/soak")
    parser.add_argument(
        "--trim",
        action="store_true",
        help="return freed heap memory to the system (glibc malloc_trim) before each RSS reading",
    )
    parser.add_argument(
        "--python-heap",
        action="store_true",
        help="also trace Python allocations (tracemalloc; slower) and print what grew most",
    )
    args = parser.parse_args()
    import tracemalloc

    snapshots: list = []

    import lightning as L
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from st_lightning.train import train

    epochs: list[dict[str, float]] = []

    class Recorder(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if args.python_heap and not tracemalloc.is_tracing():
                tracemalloc.start(8)  # from the first step on: data preparation is not traced
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            if args.trim:
                ctypes.CDLL("libc.so.6").malloc_trim(0)
            row = {
                "epoch": trainer.current_epoch,
                "seconds": time.perf_counter() - self.start,
                "rss_mb": rss_mb(),
                "steps": trainer.global_step,
            }
            if args.python_heap:
                row["python_heap_mb"] = tracemalloc.get_traced_memory()[0] / 2**20
                if trainer.current_epoch in (1, args.epochs - 1):
                    snapshots.append(tracemalloc.take_snapshot())
            epochs.append(row)
            print(epochs[-1], flush=True)

    globals()["Recorder"] = Recorder
    out_dir = Path(tempfile.mkdtemp(prefix="st_soak_"))
    overrides = [
        "+experiment=smoke",
        "data=nli",
        f"data.datasets.nli.split='train[:{args.rows}]'",
        "data.batch_size=32",
        "evaluator=[sts_dev]",
        "evaluation.on_epoch_end=true",
        "evaluation.before_training=false",
        "trainer.max_steps=-1",
        f"trainer.max_epochs={args.epochs}",
        "trainer.log_every_n_steps=10",
        f"paths.output_dir={out_dir}",
        "export.best=false",
    ]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.callbacks["recorder"] = {"_target_": "__main__.Recorder"}
    start = time.perf_counter()
    train(cfg)
    total = time.perf_counter() - start
    if len(snapshots) == 2:
        print("Python allocations that grew most from epoch 1 to the last:")
        for stat in snapshots[1].compare_to(snapshots[0], "traceback")[:8]:
            print(f"{stat.size_diff / 1024:+.0f} KiB in {stat.count_diff:+d} blocks")
            for line in stat.traceback.format()[-6:]:
                print("   ", line)

    first, second, last = epochs[0], epochs[1], epochs[-1]
    tail = epochs[len(epochs) // 2 :]
    early = epochs[1 : 1 + len(tail)]
    mean = lambda rows, key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    growth = last["rss_mb"] - second["rss_mb"]
    middle = epochs[len(epochs) // 2]
    late_growth = last["rss_mb"] - middle["rss_mb"]
    slowdown = mean(tail, "seconds") / mean(early, "seconds")
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    lines = [
        "# Soak: resident memory and epoch time over a long run",
        "",
        f"Machine: {machine}. Command: `python benchmarks/soak.py --epochs {args.epochs} "
        f"--rows {args.rows}` (tiny BERT, MNRL, batch 32, STS-B dev evaluation and a checkpoint "
        f"every epoch; {last['steps']} steps in {total:.0f} s). oneDNN kernel cache: "
        f"{os.environ.get('ONEDNN_PRIMITIVE_CACHE_CAPACITY', '1024 (default)')} entries.",
        "",
        "| epoch | seconds | RSS (MB) |",
        "| --- | --- | --- |",
        *[
            f"| {r['epoch']} | {r['seconds']:.2f} | {r['rss_mb']:.0f} |"
            for r in epochs
            if r in (first, second, last) or r["epoch"] % 10 == 0
        ],
        "",
        f"RSS growth from the end of epoch 1 to the end of epoch {last['epoch']}: "
        f"{growth:+.0f} MB ({growth / second['rss_mb']:+.1%}); over the second half (epoch "
        f"{middle['epoch']} to {last['epoch']}): {late_growth:+.0f} MB "
        f"({late_growth / middle['rss_mb']:+.1%}). Mean epoch time, second half vs epochs "
        f"1..{len(tail)}: {slowdown:.2f}x.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "rss_growth_mb": growth,
        "rss_growth_second_half_mb": late_growth,
        "slowdown": slowdown,
        "total_seconds": total,
        "onednn_cache": os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY"),
    }
    args.out.with_suffix(".json").write_text(
        json.dumps({"machine": machine, "summary": summary, "epochs": epochs}, indent=2) + "\n"
    )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
