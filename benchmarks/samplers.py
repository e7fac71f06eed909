"""Time to build one epoch of batches with each batch sampler, on 1M rows.

    python benchmarks/samplers.py [--rows 1000000] [--batch-size 64]

Rows are (anchor, positive) key pairs where anchors repeat (about 3 rows per anchor, as in NLI
triplet data), so the no-duplicates sampler has real conflicts to resolve.
Writes benchmarks/results/samplers.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from st_lightning.data import BatchSampler, GroupByLabelBatchSampler, NoDuplicatesBatchSampler

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/samplers")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    anchors = rng.integers(0, args.rows // 3, args.rows)
    keys = [(int(a), args.rows + i) for i, a in enumerate(anchors)]
    labels = rng.integers(0, 1000, args.rows).tolist()
    results = []
    for name, sampler in [
        ("BatchSampler", BatchSampler(args.rows, args.batch_size)),
        (
            "NoDuplicatesBatchSampler",
            NoDuplicatesBatchSampler(args.rows, args.batch_size, keys=keys),
        ),
        (
            "GroupByLabelBatchSampler",
            GroupByLabelBatchSampler(args.rows, args.batch_size, labels=labels),
        ),
    ]:
        start = time.perf_counter()
        n = len(sampler)
        seconds = time.perf_counter() - start
        full = sum(len(b) == args.batch_size for b in sampler)
        results.append(
            {"sampler": name, "seconds": round(seconds, 2), "batches": n, "full_batches": full}
        )
        print(f"{name:<26} {seconds:6.2f} s  {n} batches ({full} full)")
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores"
    lines = [
        f"# Batch samplers: one epoch of {args.rows:,} rows, batch {args.batch_size}",
        "",
        f"Machine: {machine}. Command: `python benchmarks/samplers.py`.",
        "",
        "| sampler | seconds per epoch | batches | full batches |",
        "| --- | --- | --- | --- |",
        *[
            f"| {r['sampler']} | {r['seconds']} | {r['batches']} | {r['full_batches']} |"
            for r in results
        ],
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"machine": machine, "results": results}, indent=2) + "\n"
    )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
