"""The same recipe through both trainers, as a new user runs each: the model quality they give.

    python benchmarks/recipe_vs_reference.py [--seeds 1 2] [--skip-reference]

Recipe (the training seeds' NLI example): all-MiniLM-L6-v2 (the packaged copy), MNRL (scale
20) on the bundled NLI triplets, batch 64, no-duplicates batches, lr 5e-5, warm-up 10%, one
epoch, each trainer's defaults for everything else:

- reference: `SentenceTransformerTrainer` with `SentenceTransformerTrainingArguments(...)`
  (float32 on a CPU unless `bf16=True`; weight decay 0, clipping at norm 1.0, linear schedule);
- st_lightning: `python -m st_lightning.train +experiment=nli_triplet seed=S evaluator=[]`.

Each trained model is scored by sentence-transformers' own evaluators: SciFact test nDCG@10
(retrieval over 5183 abstracts; neither trainer saw it) at the model's saved maximum length
(and, for st_lightning's model, at 128 tokens: the former default), and STS-B test Spearman. Writes
benchmarks/results/recipe_vs_reference.{json,md} (or --out).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def train_reference(seed: int, out: Path) -> Path:
    from datasets import load_dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )
    from sentence_transformers.base.sampler import BatchSamplers

    from st_lightning.encoders.hub import packaged_model_path

    model = SentenceTransformer(str(packaged_model_path(MODEL)), device="cpu")
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=1,
        per_device_train_batch_size=64,
        learning_rate=5e-5,
        warmup_steps=0.1,  # the warm-up ratio (transformers 5 takes it as a float below 1)
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        seed=seed,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    rows = load_dataset(str(ROOT / "data/all-nli"), "triplet", split="train")
    SentenceTransformerTrainer(
        model=model, args=args, train_dataset=rows, loss=losses.MultipleNegativesRankingLoss(model)
    ).train()
    model.save(str(out / "final"))
    return out / "final"


def train_ours(seed: int, out: Path) -> Path:
    cmd = [sys.executable, "-m", "st_lightning.train", "+experiment=nli_triplet", f"seed={seed}",
           "evaluator=[]", f"hydra.run.dir={out}"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"st_lightning training failed:\n{proc.stderr[-4000:]}")
    return out / "final"


def scifact():
    root = ROOT / "data/scifact"
    with (root / "queries.jsonl").open() as f:
        queries = {q["_id"]: q["text"] for q in map(json.loads, f)}
    with gzip.open(root / "corpus.jsonl.gz", "rt") as f:
        corpus = {d["_id"]: f"{d['title']} {d['text']}".strip() for d in map(json.loads, f)}
    relevant: dict[str, set[str]] = {}
    for line in (root / "qrels/test.tsv").read_text().splitlines()[1:]:
        q, d, s = line.split("\t")
        if int(s) > 0:
            relevant.setdefault(q, set()).add(d)
    return {q: queries[q] for q in relevant}, corpus, relevant


def evaluate(model_dir: Path, also_128: bool) -> dict[str, float]:
    from datasets import load_dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import (
        EmbeddingSimilarityEvaluator,
        InformationRetrievalEvaluator,
    )

    model = SentenceTransformer(str(model_dir), device="cpu")
    saved = model.max_seq_length
    queries, corpus, relevant = scifact()
    out: dict[str, float] = {"saved_max_seq_length": saved}
    for length in dict.fromkeys([saved, 128] if also_128 else [saved]):
        model.max_seq_length = length
        ir = InformationRetrievalEvaluator(queries, corpus, relevant, name="scifact", batch_size=64)
        out[f"scifact_ndcg@10_len{length}"] = float(ir(model)["scifact_cosine_ndcg@10"])
    model.max_seq_length = saved
    sts = load_dataset(str(ROOT / "data/stsb"), split="test")
    ev = EmbeddingSimilarityEvaluator(
        list(sts["sentence1"]), list(sts["sentence2"]), list(sts["score"]), name="sts"
    )
    out["stsb_test_spearman"] = float(ev(model)["sts_spearman_cosine"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--work", type=Path, default=ROOT / "outputs/recipe_vs_reference")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/recipe_vs_reference")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    results: dict[str, Any] = {"runs": []}
    trainers = ["st_lightning"] + ([] if args.skip_reference else ["reference"])
    for seed in args.seeds:
        for trainer in trainers:
            out = args.work / f"{trainer}_seed{seed}"
            start = time.perf_counter()
            model = (train_ours if trainer == "st_lightning" else train_reference)(seed, out)
            seconds = time.perf_counter() - start
            row = {"trainer": trainer, "seed": seed, "train_seconds": round(seconds)}
            row.update(evaluate(model, also_128=trainer == "st_lightning"))
            results["runs"].append(row)
            print(row, flush=True)
            write(results, args.out)


def write(results: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# The same recipe through both trainers",
        "",
        "all-MiniLM-L6-v2, MNRL on the bundled NLI triplets (batch 64, lr 5e-5, warm-up 10%, one "
        "epoch), each trainer's defaults otherwise; scored by sentence-transformers' evaluators. "
        "Written by `python benchmarks/recipe_vs_reference.py`.",
        "",
        "| trainer | seed | train s | saved max length | SciFact nDCG@10 (saved length) "
        "| SciFact nDCG@10 (128 tokens) | STS-B test Spearman |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results["runs"]:
        saved = r["saved_max_seq_length"]
        lines.append(
            f"| {r['trainer']} | {r['seed']} | {r['train_seconds']} | {saved} | "
            f"{r[f'scifact_ndcg@10_len{saved}']:.4f} | "
            f"{r.get('scifact_ndcg@10_len128', float('nan')):.4f} | "
            f"{r['stsb_test_spearman']:.4f} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
