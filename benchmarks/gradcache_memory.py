"""Peak memory and speed of one training step, plain vs gradient-cached, as the batch grows.

Each (mode, batch size) runs in a fresh process, after a warm-up step on 4 rows:
all-MiniLM-L6-v2 (the packaged copy), MNRL on bundled NLI triplets, one forward+backward step.
Peak resident memory is sampled every 2 ms during the step and reported above the resident
memory just before it.

    python benchmarks/gradcache_memory.py [--batch-sizes 64 128 256 512 1024] [--mini-batch-size 32]

Writes benchmarks/results/gradcache_memory.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from memory import PeakSampler, rss  # noqa: E402


def one(mode: str, batch: int, mini: int, model: str) -> dict:
    import torch
    from datasets import load_dataset

    from st_lightning import losses
    from st_lightning.encoders import SentenceEncoder
    from st_lightning.losses.gradcache import cached_backward

    torch.manual_seed(0)
    encoder = SentenceEncoder.from_pretrained(model, max_seq_length=128).train()
    rows = load_dataset(str(ROOT / "data/all-nli"), "triplet", split=f"train[:{batch}]")
    columns = [encoder.tokenize(rows[c]) for c in ("anchor", "positive", "negative")]
    loss = losses.MultipleNegativesRankingLoss()
    # Warm up (first-call allocations and kernels) on a few rows, outside the measurement.
    warm = [{k: v[:4] for k, v in c.items()} for c in columns]
    loss([encoder(c) for c in warm], None).backward()
    encoder.zero_grad(set_to_none=False)
    before = rss()
    sampler = PeakSampler()
    sampler.start()
    start = time.perf_counter()
    if mode == "cached":
        value = cached_backward(encoder, loss, columns, None, mini)
    else:
        value = loss([encoder(c) for c in columns], None)
        value.backward()
    seconds = time.perf_counter() - start
    sampler.running = False
    sampler.join()
    return {
        "mode": mode,
        "batch_size": batch,
        "mini_batch_size": mini if mode == "cached" else None,
        "loss": float(value),
        "step_seconds": round(seconds, 3),
        "samples_per_second": round(batch / seconds, 2),
        "peak_step_memory_mb": round((sampler.peak - before) / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--mini-batch-size", type=int, default=32)
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--modes", nargs="+", default=["plain", "cached"])
    parser.add_argument(
        "--plain-max", type=int, default=256, help="largest batch for plain steps (memory grows)"
    )
    parser.add_argument("--render", action="store_true", help="rewrite the table from the JSON")
    parser.add_argument("--single", nargs=2, metavar=("MODE", "BATCH"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/gradcache_memory")
    args = parser.parse_args()
    if args.render:
        saved = json.loads(args.out.with_suffix(".json").read_text())
        args.out.with_suffix(".md").write_text(render(saved["results"], saved["machine"], args))
        return
    if args.single:
        result = one(args.single[0], int(args.single[1]), args.mini_batch_size, args.model)
        print("RESULT " + json.dumps(result))
        return

    results = []
    for batch in args.batch_sizes:
        for mode in args.modes:
            if mode == "plain" and batch > args.plain_max:
                continue
            cmd = [sys.executable, __file__, "--single", mode, str(batch)]
            cmd += ["--mini-batch-size", str(args.mini_batch_size), "--model", args.model]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            result = json.loads(out.split("RESULT ", 1)[1])
            results.append(result)
            print(
                f"{mode:>6}  batch {batch:>5}  {result['step_seconds']:>8.2f} s  "
                f"{result['samples_per_second']:>8.1f} samples/s  "
                f"peak +{result['peak_step_memory_mb']:>8.1f} MB  loss {result['loss']:.4f}"
            )
    import torch

    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"machine": machine, "results": results}, indent=2) + "\n"
    )
    table = render(results, machine, args)
    args.out.with_suffix(".md").write_text(table)
    print(table)


def render(results: list[dict], machine: str, args: argparse.Namespace) -> str:
    lines = [
        f"# GradCache: one MNRL step on NLI triplets, {args.model}",
        "",
        f"Machine: {machine}. Command: `python benchmarks/gradcache_memory.py`.",
        f"Cached steps embed {args.mini_batch_size} rows at a time. Peak memory is resident "
        "memory above the level just before the step. Plain steps above "
        f"{args.plain_max} rows are not run: their memory grows with the batch past this "
        "machine's 24 GB. The losses differ by dropout draws (the model is in training mode).",
        "",
        "| batch | plain peak MB | cached peak MB | plain samples/s | cached samples/s "
        "| loss plain / cached |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    by = {(r["mode"], r["batch_size"]): r for r in results}
    for batch in sorted({r["batch_size"] for r in results}):
        p, c = by.get(("plain", batch)), by.get(("cached", batch))
        if c is None:
            continue
        plain = (
            (p["peak_step_memory_mb"], p["samples_per_second"], f"{p['loss']:.5f}")
            if p
            else ("not run", "-", "-")
        )
        lines.append(
            f"| {batch} | {plain[0]} | {c['peak_step_memory_mb']} | {plain[1]} | "
            f"{c['samples_per_second']} | {plain[2]} / {c['loss']:.5f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
