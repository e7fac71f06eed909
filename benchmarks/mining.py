"""The hard-negative miner against sentence-transformers' `mine_hard_negatives`, side by side.

    python benchmarks/mining.py [--corpus-size 100000] [--queries 10000] [--skip-reference-bf16]

Both mine with all-MiniLM-L6-v2 (the packaged copy, maximum length 256) for `--queries`
(anchor, positive) rows of the bundled NLI pairs against a corpus of `--corpus-size` unique
sentences from the bundled NLI, STS-B and Quora data (plus the positives), with the same
settings: 5 negatives per row, `relative_margin=0.05` (positive-aware mining), exact search,
n-tuple output with scores, batch size 64.

Each run is a fresh process; the time is the mining call's wall clock (embedding, search,
filtering, rows) and peak memory is the process's peak resident memory above its resident
memory just before the call (sampled every 5 ms), next to the process's whole peak. Runs:

- reference, float32: `mine_hard_negatives` as its users call it (exact search in chunks of
  `faiss_batch_size=16384` queries against the whole corpus);
- reference, bf16: the same with the model in bfloat16 (`--skip-reference-bf16` leaves it out);
- st_lightning, float32: `st_lightning.mining.mine_hard_negatives`, exact chunked search;
- st_lightning, precision auto: bfloat16 where the CPU runs it fast (float32 otherwise).

Agreement: the share of mined rows equal (texts) to the reference float32 run's.

Writes benchmarks/results/mining.{json,md} (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from memory import PeakSampler, machine, rss  # noqa: E402

SETTINGS: dict[str, Any] = dict(
    num_negatives=5,
    relative_margin=0.05,
    output_format="n-tuple",
    output_scores=True,
    batch_size=64,
)
RUNS = {
    "reference_fp32": ("reference", "float32"),
    "reference_bf16": ("reference", "bfloat16"),
    "st_lightning_fp32": ("st_lightning", "float32"),
    "st_lightning_auto": ("st_lightning", "auto"),
}


def build_data(corpus_size: int, queries: int) -> tuple[Any, list[str]]:
    from datasets import load_dataset

    data = ROOT / "data"
    texts: dict[str, None] = {}
    for split in ("train", "dev", "test"):
        rows = load_dataset(str(data / "all-nli"), "pair-class", split=split)
        texts.update(dict.fromkeys(list(rows["premise"]) + list(rows["hypothesis"])))
    for split in ("train", "validation", "test"):
        rows = load_dataset(str(data / "stsb"), split=split)
        texts.update(dict.fromkeys(list(rows["sentence1"]) + list(rows["sentence2"])))
    rows = load_dataset(str(data / "quora-duplicates"), "pair-class", split="train")
    texts.update(dict.fromkeys(list(rows["sentence1"]) + list(rows["sentence2"])))
    pool = sorted(texts)
    random.Random(0).shuffle(pool)
    if len(pool) < corpus_size:
        raise SystemExit(f"Only {len(pool)} unique bundled sentences; lower --corpus-size.")
    pairs = load_dataset(str(data / "all-nli"), "pair", split=f"train[:{queries}]")
    return pairs, pool[:corpus_size]


def child(impl: str, precision: str, corpus_size: int, queries: int, out: str) -> None:
    import torch

    from st_lightning.encoders.hub import packaged_model_path

    model_path = str(packaged_model_path("sentence-transformers/all-MiniLM-L6-v2"))
    pairs, corpus = build_data(corpus_size, queries)
    if impl == "reference":
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.util import mine_hard_negatives

        kwargs = {"dtype": torch.bfloat16} if precision == "bfloat16" else {}
        model = SentenceTransformer(model_path, device="cpu", model_kwargs=kwargs)

        def call():
            return mine_hard_negatives(pairs, model, corpus=corpus, verbose=False, **SETTINGS)
    else:
        from st_lightning.encoders import SentenceEncoder
        from st_lightning.mining import mine_hard_negatives
        from st_lightning.mining.embed import resolve_precision

        model = SentenceEncoder.from_pretrained(model_path)
        precision = resolve_precision(precision, torch.device("cpu"))  # type: ignore[arg-type]

        def call():
            return mine_hard_negatives(
                pairs, model, corpus=corpus, precision=precision, show_progress=False, **SETTINGS
            )

    before = rss()
    sampler = PeakSampler(interval=0.005)
    sampler.start()
    start = time.perf_counter()
    mined = call()
    seconds = time.perf_counter() - start
    sampler.running = False
    sampler.join()
    import resource

    mined.to_parquet(out + ".parquet")
    Path(out + ".json").write_text(
        json.dumps(
            {
                "seconds": round(seconds, 1),
                "peak_above_start_mib": round((sampler.peak - before) / 2**20),
                "process_peak_mib": round(
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                ),
                "rows": len(mined),
                "precision": precision,
                "corpus": len(set(corpus) | set(pairs["positive"])),
                "queries": len(set(pairs["anchor"])),
            }
        )
    )


def agreement(a: Any, b: Any) -> float:
    text = [c for c in b.column_names if c != "scores"]
    key = lambda row: tuple(row[c] for c in text)  # noqa: E731
    theirs = {key(r) for r in b.to_list()}
    return sum(key(r) in theirs for r in a.to_list()) / max(len(a), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus-size", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--skip-reference-bf16", action="store_true")
    parser.add_argument(
        "--runs",
        nargs="+",
        choices=list(RUNS),
        help="run only these and replace them in the existing results file (the other runs "
        "are kept; agreement is recomputed where the reference fp32 rows were kept, else kept)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/mining")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        impl, precision, out = args.child
        child(impl, precision, args.corpus_size, args.queries, out)
        return
    from datasets import load_dataset

    runs = {
        k: v for k, v in RUNS.items() if not (args.skip_reference_bf16 and k == "reference_bf16")
    }
    results: dict[str, Any] = {"machine": machine(), "settings": SETTINGS, "runs": {}}
    keep = args.out.with_suffix(".rows")  # each run's mined rows, for agreement in later runs
    keep.mkdir(parents=True, exist_ok=True)
    previous: dict[str, Any] = {}
    if args.runs:
        runs = {k: RUNS[k] for k in args.runs}
        results = json.loads(args.out.with_suffix(".json").read_text())
        previous = {k: dict(v) for k, v in results["runs"].items()}
    mined = {
        p.stem: load_dataset("parquet", data_files=str(p), split="train")
        for p in keep.glob("*.parquet")
        if p.stem not in runs
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, (impl, precision) in runs.items():
            out = str(Path(tmp) / name)
            cmd = [sys.executable, __file__, "--corpus-size", str(args.corpus_size),
                   "--queries", str(args.queries), "--child", impl, precision, out]  # fmt: skip
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
            print(f"{name} ...", flush=True)
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed:\n{proc.stderr[-4000:]}")
            results["runs"][name] = json.loads(Path(out + ".json").read_text())
            mined[name] = load_dataset("parquet", data_files=out + ".parquet", split="train")
            mined[name].to_parquet(str(keep / f"{name}.parquet"))
            print(results["runs"][name], flush=True)
    ref = results["runs"]["reference_fp32"]
    for name, run in results["runs"].items():
        if name in mined and "reference_fp32" in mined:
            same = agreement(mined[name], mined["reference_fp32"])
            run["agreement_with_reference_fp32"] = round(same, 4)
        else:  # rows not kept by an earlier run: the agreement it measured stands
            run["agreement_with_reference_fp32"] = previous[name]["agreement_with_reference_fp32"]
        run["speedup_vs_reference_fp32"] = round(ref["seconds"] / run["seconds"], 2)
        run["peak_memory_ratio"] = round(
            run["peak_above_start_mib"] / ref["peak_above_start_mib"], 3
        )
    write(results, args.out)


def write(results: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    first = next(iter(results["runs"].values()))
    lines = [
        "# Hard-negative mining: st_lightning vs sentence-transformers",
        "",
        f"Machine: {results['machine']}. all-MiniLM-L6-v2, {first['queries']:,} queries against "
        f"{first['corpus']:,} unique corpus texts; settings: "
        + ", ".join(f"{k}={v}" for k, v in results["settings"].items())
        + ". Exact search in every run. Written by `python benchmarks/mining.py`.",
        "",
        "| run | precision | seconds | speed-up | peak memory above start (MiB) | memory ratio "
        "| process peak (MiB) | rows | same rows as reference fp32 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results["runs"].items():
        lines.append(
            f"| {name} | {r['precision']} | {r['seconds']} | {r['speedup_vs_reference_fp32']}x | "
            f"{r['peak_above_start_mib']:,} | {r['peak_memory_ratio']} | {r['process_peak_mib']:,} "
            f"| {r['rows']:,} | {r['agreement_with_reference_fp32']:.2%} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
