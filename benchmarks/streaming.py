"""Streaming training data: resident memory and speed at scale, and the cost against the
in-memory path on real data.

Two parts, each in fresh processes:

- **scale**: `--rows` generated (anchor, positive) rows (10 million by default) in parquet
  shards, streamed once through a training run of a tiny random BERT (MNRL, batch
  `--batch-size`, `--workers` DataLoader workers reading and tokenizing). The resident memory of the
  training process and its workers together is sampled every second; the result says whether
  it stays flat (after the first minute, within 10% of its value at the end) and the rows/s.
- **reader**: the rows/s one reader (one DataLoader worker) delivers on one core, with
  all-MiniLM-L6-v2's tokenizer at max length 128: how many workers a GPU's rate needs.
- **nli**: all-MiniLM-L6-v2 with MNRL on the bundled NLI triplets (batch 64, bf16 where the
  CPU has bf16 units, as `make train`), in memory and streamed, alternating A B A B; samples/s
  of the steps after the first `--warmup`, and the ratio streamed / in-memory.

    python benchmarks/streaming.py [--rows 10000000] [--nli-steps 30] [--only scale|reader|nli]

Writes benchmarks/results/streaming.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from memory import machine  # noqa: E402

WORDS = (
    "a man woman child dog cat plays runs sits stands near under over the park street "
    "house river blue red green small large old young quickly slowly ball music food water"
).split()


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def generate(folder: Path, rows: int, shards: int) -> None:
    """Parquet shards of generated sentence pairs (8-16 words each), written shard by shard."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.parquet"))) == shards:
        return
    words = np.array(WORDS)
    per_shard = -(-rows // shards)
    for s in range(shards):
        n = min(per_shard, rows - s * per_shard)
        rng = np.random.default_rng(s)
        cols = {}
        for column in ("anchor", "positive"):
            picks = words[rng.integers(0, len(words), size=(n, 12))]
            cols[column] = [f"{i + s * per_shard} " + " ".join(r) for i, r in enumerate(picks)]
        pq.write_table(pa.table(cols), folder / f"part-{s:04d}.parquet", row_group_size=50_000)


def timed_fit(module, data, out: str, steps: int, precision: str) -> list[float]:
    """Train `steps` steps with the run builder (no checkpoints, no progress bar); returns the
    time at the end of each step."""
    import lightning as L

    from st_lightning.run import build

    times: list[float] = []

    class Clock(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            times.append(time.perf_counter())

    run = build(
        module, data, out, callbacks=[Clock()], max_steps=steps, max_epochs=-1,
        enable_progress_bar=False, enable_checkpointing=False, precision=precision,
        log_every_n_steps=1000,
    )  # fmt: skip
    run.fit()
    return times


def scale_run(folder: str, rows: int, batch: int, workers: int, out: str) -> None:
    """(In a child process.) Stream `rows` rows once through training a tiny model."""
    import torch

    from st_lightning import losses
    from st_lightning.data import DatasetSpec, EmbeddingDataModule
    from st_lightning.encoders import tiny_encoder
    from st_lightning.module import EmbeddingModule

    torch.manual_seed(0)
    # The smallest BERT that trains (1 layer, hidden 16, no dropout), padded forward (faster
    # than the unpadded one at this size): the run measures the data path, not the model.
    encoder = tiny_encoder(
        hidden_size=16, num_layers=1, num_heads=1, intermediate_size=32, max_seq_length=32,
        unpadded=False, dropout=0.0,
    )  # fmt: skip
    data = EmbeddingDataModule(
        {"pairs": DatasetSpec(f"{folder}/*.parquet", streaming=True)},
        tokenizer=encoder.tokenizer,
        batch_size=batch,
        num_workers=workers,
        shuffle_buffer=20_000,
        max_seq_length=32,
    )
    # One padded forward per column: length groups cost more than they save at this size.
    module = EmbeddingModule(
        encoder, {"pairs": losses.MultipleNegativesRankingLoss()}, lr=1e-3, warmup_ratio=0.0,
        length_group_tokens=None,
    )  # fmt: skip
    steps = rows // batch
    start = time.perf_counter()
    times = timed_fit(module, data, out, steps, "32-true")
    Path(out, "steps.json").write_text(
        json.dumps({"steps": steps, "start": start, "times": times, "batch": batch})
    )


def reader_rate(folder: Path, batches: int) -> dict:
    """Rows/s of one reader (read, check, shuffle, tokenize with all-MiniLM-L6-v2's tokenizer at
    max length 128, pad) in this process, on one core: what a DataLoader worker delivers."""
    import torch

    from st_lightning.data import DatasetSpec, EmbeddingDataModule, NoDuplicatesBatchSampler

    torch.set_num_threads(1)
    data = EmbeddingDataModule(
        {"pairs": DatasetSpec(f"{folder}/*.parquet", streaming=True)},
        tokenizer="sentence-transformers/all-MiniLM-L6-v2",
        batch_size=128,
        batch_sampler=NoDuplicatesBatchSampler,
        max_seq_length=128,
    )
    data.setup()
    it = iter(data.train_dataloader())
    for _ in range(10):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    seconds = time.perf_counter() - start
    return {"batches": batches, "batch_size": 128, "rows_per_s": round(batches * 128 / seconds)}


def nli_run(streaming: bool, steps: int, warmup: int, workers: int, out: str) -> None:
    """(In a child process.) all-MiniLM-L6-v2 on the NLI triplets, in memory or streamed."""
    import torch

    from st_lightning import losses
    from st_lightning.data import DatasetSpec, EmbeddingDataModule, NoDuplicatesBatchSampler
    from st_lightning.encoders import SentenceEncoder
    from st_lightning.module import EmbeddingModule

    torch.manual_seed(0)
    encoder = SentenceEncoder.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    spec = DatasetSpec(str(ROOT / "data/all-nli"), "triplet", "train", streaming=streaming)
    data = EmbeddingDataModule(
        {"nli": spec},
        tokenizer=encoder.tokenizer,
        batch_size=64,
        batch_sampler=NoDuplicatesBatchSampler,
        num_workers=workers if streaming else 0,
    )
    module = EmbeddingModule(encoder, {"nli": losses.MultipleNegativesRankingLoss()}, lr=5e-5)
    times = timed_fit(module, data, out, steps, "auto")
    measured = times[warmup:]
    rate = 64 * (len(measured) - 1) / (measured[-1] - measured[0])
    Path(out, "rate.json").write_text(json.dumps({"samples_per_s": rate}))


def child(args: list[str], sample_memory: bool = False) -> list[tuple[float, int]]:
    """Run this script's `--child` part; with `sample_memory`, (time.perf_counter(), resident
    bytes of the child and its workers) every second. perf_counter is the system's monotonic
    clock, so the times compare with those the child records."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, __file__, "--child", *args], cwd=ROOT, env=env)
    samples: list[tuple[float, int]] = []
    while proc.poll() is None:
        if sample_memory:
            samples.append((time.perf_counter(), tree_rss(proc.pid)))
        time.sleep(1.0)
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed with {proc.returncode}")
    return samples


def memory_while_training(samples: list[tuple[float, int]], started: float, ended: float) -> dict:
    """Resident memory from the process start (`started`) to the last training step
    (`ended`): later samples are the teardown (workers exiting), not the run. Flat: after
    the first minute, every sample within 10% of the value at the end of training."""
    run = [(t - started, r) for t, r in samples if r > 0 and t <= ended]
    end = run[-1][1]
    after_minute = [r for t, r in run if t >= 60.0]
    drift = max(abs(r - end) / end for r in after_minute) if after_minute else None
    return {
        "rss_mb": [(round(t, 1), round(r / 2**20, 1)) for t, r in run],
        "rss_end_mb": round(end / 2**20, 1),
        "rss_min_after_first_minute_mb": round(min(after_minute) / 2**20, 1)
        if after_minute
        else None,
        "rss_max_after_first_minute_mb": round(max(after_minute) / 2**20, 1)
        if after_minute
        else None,
        "rss_drift_after_first_minute": round(drift, 4) if drift is not None else None,
        "flat": drift is not None and drift <= 0.10,
    }


def scale(args: argparse.Namespace, work: Path) -> dict:
    folder = work / "shards"
    t0 = time.perf_counter()
    generate(folder, args.rows, args.shards)
    generated = time.perf_counter() - t0
    out = work / "scale"
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    memory = child(
        ["scale", str(folder), str(args.rows), str(args.batch_size), str(args.workers), str(out)],
        sample_memory=True,
    )
    steps = json.loads((out / "steps.json").read_text())
    times = steps["times"]
    train_s = times[-1] - steps["start"]
    return {
        "rows": args.rows,
        "shards": args.shards,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "steps": steps["steps"],
        "rows_streamed": steps["steps"] * steps["batch"],
        "generate_s": round(generated, 1),
        "train_s": round(train_s, 1),
        "rows_per_s": round(steps["steps"] * steps["batch"] / train_s),
        **memory_while_training(memory, started, times[-1]),
    }


def nli(args: argparse.Namespace, work: Path) -> dict:
    rates: dict[str, list[float]] = {"in memory": [], "streamed": []}
    for rep in range(args.repeats):
        for name in rates:
            out = work / f"nli-{name.replace(' ', '_')}-{rep}"
            out.mkdir(parents=True, exist_ok=True)
            flag = "1" if name == "streamed" else "0"
            child(
                ["nli", flag, str(args.nli_steps), str(args.warmup), str(args.workers), str(out)],
                out,
            )
            rates[name].append(json.loads((out / "rate.json").read_text())["samples_per_s"])
    mean = {k: sum(v) / len(v) for k, v in rates.items()}
    return {
        "steps": args.nli_steps,
        "warmup": args.warmup,
        "workers": args.workers,
        "repeats": args.repeats,
        "samples_per_s": {k: [round(x, 2) for x in v] for k, v in rates.items()},
        "mean_samples_per_s": {k: round(v, 2) for k, v in mean.items()},
        "ratio_streamed_to_in_memory": round(mean["streamed"] / mean["in memory"], 3),
    }


def render(results: dict) -> str:
    lines = [
        "# Streaming training data",
        "",
        f"Machine: {results['machine']}. Each part's command is under its heading.",
        "",
    ]
    if "scale" in results:
        s = results["scale"]
        lines += [
            f"## {s['rows_streamed']:,} generated rows streamed through training (tiny BERT)",
            "",
            "| rows | shards | batch | workers | train s | rows/s | RSS at the end MB | "
            "RSS after the 1st minute MB | largest drift from the end | flat (<= 10%) |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| {s['rows_streamed']:,} | {s['shards']} | {s['batch_size']} | {s['workers']} | "
            f"{s['train_s']} | {s['rows_per_s']:,} | {s['rss_end_mb']} | "
            f"{s['rss_min_after_first_minute_mb']}-{s['rss_max_after_first_minute_mb']} | "
            f"{s['rss_drift_after_first_minute']} | "
            f"{s['flat']} |",
            "",
            *([s["note"], ""] if s.get("note") else []),
            f"`{s.get('command', '')}`",
            "",
            "Resident memory (training process and its DataLoader workers), MB, by minute:",
            "",
            "| minute | " + " | ".join(str(m) for m in range(0, len(s["rss_mb"]) // 60 + 1)) + " |",
            "|---|" + "---|" * (len(s["rss_mb"]) // 60 + 1),
            "| RSS MB | "
            + " | ".join(str(r) for t, r in s["rss_mb"][::60])
            + (" |" if s["rss_mb"] else ""),
            "",
        ]
    if "reader" in results:
        r = results["reader"]
        lines += [
            "## One reader (a DataLoader worker) on one core",
            "",
            "Read, check, shuffle, no-duplicates batching, all-MiniLM-L6-v2's tokenizer at max "
            f"length 128, padding: **{r['rows_per_s']:,} rows/s** ({r['batches']} batches of "
            f"{r['batch_size']} generated pairs). `{r.get('command', '')}`",
            "",
        ]
    if "nli" in results:
        n = results["nli"]
        lines += [
            "## all-MiniLM-L6-v2 on the bundled NLI triplets: streamed vs in memory",
            "",
            f"Batch 64, no-duplicates batches, {n['steps']} steps per run ({n['warmup']} not "
            f"timed), runs alternating, {n['repeats']} of each; streamed with {n['workers']} "
            "DataLoader worker(s).",
            "",
            "| path | samples/s per run | mean samples/s |",
            "|---|---|---|",
        ]
        for name, values in n["samples_per_s"].items():
            lines.append(
                f"| {name} | {', '.join(map(str, values))} | {n['mean_samples_per_s'][name]} |"
            )
        lines += ["", f"Streamed / in memory: **{n['ratio_streamed_to_in_memory']}**", ""]
        lines += [f"`{n.get('command', '')}`", ""]
        if "nli_earlier" in results:
            e = results["nli_earlier"]
            lines += [
                f"An earlier run ({e['repeats']} of each, {e['steps']} steps): in memory "
                f"{e['mean_samples_per_s']['in memory']}, streamed "
                f"{e['mean_samples_per_s']['streamed']} samples/s, ratio "
                f"{e['ratio_streamed_to_in_memory']}.",
                "",
            ]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        if kind == "scale":
            folder, rows, batch, workers, out = rest
            scale_run(folder, int(rows), int(batch), int(workers), out)
        else:
            flag, steps, warmup, workers, out = rest
            nli_run(flag == "1", int(steps), int(warmup), int(workers), out)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--shards", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--nli-steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", choices=["scale", "reader", "nli"])
    parser.add_argument("--work", default="/tmp/st_lightning_streaming_bench")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/streaming"))
    args = parser.parse_args()
    work = Path(args.work)
    results: dict = {"machine": machine(), "command": "python " + " ".join(sys.argv)}
    out = Path(args.out)
    if out.with_suffix(".json").exists():  # one part at a time keeps the other's results
        previous = json.loads(out.with_suffix(".json").read_text())
        parts = ("scale", "reader", "nli", "nli_earlier")
        results.update({k: v for k, v in previous.items() if k in parts})
    if args.only in (None, "scale"):
        results["scale"] = {**scale(args, work), "command": results["command"]}
    if args.only in (None, "reader"):
        generate(work / "shards", args.rows, args.shards)
        results["reader"] = {**reader_rate(work / "shards", 400), "command": results["command"]}
    if args.only in (None, "nli"):
        results["nli"] = {**nli(args, work), "command": results["command"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    table = render(results)
    out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
