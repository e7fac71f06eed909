"""Evaluation time of st_lightning vs sentence-transformers on the same model and data.

    python benchmarks/evaluation.py [--repeats 2] [--workloads stsb scifact]

Both libraries evaluate the packaged all-MiniLM-L6-v2 in this process, alternating
(st_lightning, reference, st_lightning, ...), on STS-B test (2758 sentences) and SciFact
(300 queries over 5183 abstracts). Prints a table with the time ratio and both libraries'
primary metric; writes benchmarks/results/evaluation.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def workloads(names: list[str]):
    from sentence_transformers.sentence_transformer import evaluation as st

    from st_lightning.evaluation import suites

    for name in names:
        if name == "stsb":
            ours = suites.stsb("test", data_dir=str(ROOT / "data"), batch_size=64)
            ref = st.EmbeddingSimilarityEvaluator(
                ours.sentences1, ours.sentences2, ours.scores.tolist(), batch_size=64
            )
            yield name, ours, ref, "spearman_cosine"
        elif name == "scifact":
            ours = suites.scifact("test", data_dir=str(ROOT / "data"), batch_size=64)
            queries = dict(zip(ours.query_ids, ours.queries, strict=True))
            corpus = dict(zip(ours.corpus_ids, ours.corpus, strict=True))
            ref = st.InformationRetrievalEvaluator(queries, corpus, ours.relevant, batch_size=64)
            yield name, ours, ref, "cosine_ndcg@10"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="alternations for STS-B")
    parser.add_argument("--scifact-repeats", type=int, default=1, help="alternations for SciFact")
    parser.add_argument("--workloads", nargs="+", default=["stsb", "scifact"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/evaluation")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from st_lightning.encoders import SentenceEncoder

    model = "sentence-transformers/all-MiniLM-L6-v2"
    encoder = SentenceEncoder.from_pretrained(model)
    from st_lightning.encoders.hub import resolve_model_path

    reference = SentenceTransformer(str(resolve_model_path(model)), device="cpu")
    # Warm both up (first-call allocations, thread pools) outside the measurements.
    encoder.encode(["warm up"] * 64)
    reference.encode(["warm up"] * 64)
    rows = []
    for name, ours, ref, metric in workloads(args.workloads):
        repeats = args.scifact_repeats if name == "scifact" else args.repeats
        times: dict[str, list[float]] = {"st_lightning": [], "reference": []}
        scores = {}
        for _ in range(repeats):
            start = time.perf_counter()
            scores["st_lightning"] = ours.evaluate(encoder)[metric]
            times["st_lightning"].append(time.perf_counter() - start)
            start = time.perf_counter()
            result = ref(reference)
            scores["reference"] = next(v for k, v in result.items() if k.endswith(metric))
            times["reference"].append(time.perf_counter() - start)
        ours_s, ref_s = (
            statistics.median(times["st_lightning"]),
            statistics.median(times["reference"]),
        )
        rows.append(
            {
                "workload": name,
                "metric": metric,
                "st_lightning_seconds": round(ours_s, 2),
                "reference_seconds": round(ref_s, 2),
                "speedup": round(ref_s / ours_s, 3),
                "st_lightning_metric": round(float(scores["st_lightning"]), 5),
                "reference_metric": round(float(scores["reference"]), 5),
                "all_seconds": times,
            }
        )
        print(
            f"{name}: st_lightning {ours_s:.1f} s, reference {ref_s:.1f} s, "
            f"speedup {ref_s / ours_s:.2f}x"
        )
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    lines = [
        "# Evaluation time: st_lightning vs sentence-transformers (all-MiniLM-L6-v2)",
        "",
        f"Machine: {machine}. Command: `python benchmarks/evaluation.py` (median of "
        f"{args.repeats} alternations for STS-B, {args.scifact_repeats} for SciFact; the two "
        "libraries alternate in one process after a warm-up).",
        "",
        "| workload | metric | st_lightning s | reference s | speedup "
        "| st_lightning metric | reference metric |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *[
            f"| {r['workload']} | {r['metric']} | {r['st_lightning_seconds']} | "
            f"{r['reference_seconds']} | {r['speedup']}x | {r['st_lightning_metric']} | "
            f"{r['reference_metric']} |"
            for r in rows
        ],
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"machine": machine, "results": rows}, indent=2) + "\n"
    )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
