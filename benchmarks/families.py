"""Training-step speed per backbone family: one padded forward per column vs the length-grouped
forward (rows of all columns sorted by length, groups padded to their own longest row), and
for BERT the unpadded forward too.

Each family is a randomly initialised model of the same size (hidden 256, 4 layers, 4 heads,
MLP 1024; all-MiniLM-L6-v2's vocabulary), decoders with last-token pooling, encoders with mean
pooling; the step is MNRL on 64 bundled NLI triplets, forward and backward, float32. The modes
alternate, `--runs` timed steps each after a warm-up step; the median is reported.

    python benchmarks/families.py [--runs 5]

Writes benchmarks/results/families.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAMILIES = ["bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "modernbert", "t5",
            "qwen2", "qwen3", "llama", "mistral", "gemma"]  # fmt: skip
SIZE = dict(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024, max_positions=256)


def encoder_of(model_type: str):
    import torch
    from transformers import AutoTokenizer

    from st_lightning.encoders import Pooling, SentenceEncoder, resolve_model_path
    from st_lightning.encoders.families import (
        DECODERS,
        build_backbone,
        hidden_size_of,
        random_config,
    )

    vocabulary = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    tok = AutoTokenizer.from_pretrained(vocabulary)
    config = random_config(model_type, vocab_size=tok.vocab_size, **SIZE)
    torch.manual_seed(0)
    backbone = build_backbone(config)
    pooling = (
        "lasttoken" if model_type in DECODERS else "cls" if model_type == "modernbert" else "mean"
    )
    return SentenceEncoder(
        backbone, tok, Pooling(hidden_size_of(config), pooling), max_seq_length=128
    )


def measure(model_type: str, runs: int, batch: int) -> dict:
    import torch
    from datasets import load_dataset

    from st_lightning import losses
    from st_lightning.encoders.batch import BatchEmbedder

    encoder = encoder_of(model_type).train()
    rows = load_dataset(str(ROOT / "data/all-nli"), "triplet", split=f"train[:{batch}]")
    columns = [encoder.tokenize(rows[c]) for c in ("anchor", "positive", "negative")]
    loss = losses.MultipleNegativesRankingLoss()
    modes = {"padded": BatchEmbedder(encoder, None), "grouped": BatchEmbedder(encoder, "auto")}
    if encoder.runs_unpadded():  # BERT: real tokens only (what training runs for it)
        modes["unpadded"] = BatchEmbedder(encoder, "auto")
    times: dict[str, list[float]] = {m: [] for m in modes}
    padding: dict[str, float] = {}
    for i in range(runs + 1):
        for mode, embedder in modes.items():
            encoder.unpadded = mode == "unpadded"
            encoder.zero_grad(set_to_none=True)
            torch.manual_seed(i)
            start = time.perf_counter()
            loss(embedder(columns), None).backward()
            if i:  # the first round warms up
                times[mode].append(time.perf_counter() - start)
            real, padded = embedder.token_counts(columns)
            padding[mode] = 1 - real / padded
    padded_time = statistics.median(times["padded"])
    return {
        "family": model_type,
        "backbone": type(encoder.transformer).__name__,
        "parameters": sum(p.numel() for p in encoder.parameters()),
        **{
            mode: {
                "samples_per_second": round(batch / statistics.median(t), 1),
                "speedup": round(padded_time / statistics.median(t), 2),
                "padding_fraction": round(padding[mode], 3),
            }
            for mode, t in times.items()
        },
    }


def render(results: dict) -> str:
    lines = [
        "# Training-step speed per backbone family: padded vs length-grouped (and unpadded)",
        "",
        f"Machine: {results['machine']}. Written by `python benchmarks/families.py` (random "
        f"models of one size, MNRL on {results['batch']} NLI triplets, forward + backward, "
        f"float32, median of {results['runs']} steps per mode, modes alternating).",
        "",
        "| family | backbone | params | padded samples/s | padding | grouped samples/s | "
        "padding | grouped speed-up | unpadded speed-up |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results["rows"]:
        unpadded = f"{r['unpadded']['speedup']:.2f}x" if "unpadded" in r else "-"
        lines.append(
            f"| {r['family']} | {r['backbone']} | {r['parameters'] / 1e6:.1f}M | "
            f"{r['padded']['samples_per_second']} | {r['padded']['padding_fraction']:.0%} | "
            f"{r['grouped']['samples_per_second']} | {r['grouped']['padding_fraction']:.0%} | "
            f"{r['grouped']['speedup']:.2f}x | {unpadded} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--families", nargs="+", default=FAMILIES)
    parser.add_argument("--render", action="store_true", help="rewrite the table from the JSON")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/families")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.render:
        results = json.loads(args.out.with_suffix(".json").read_text())
    else:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from memory import machine

        rows = []
        for family in args.families:
            rows.append(measure(family, args.runs, args.batch))
            print(rows[-1], flush=True)
        results = {"machine": machine(), "runs": args.runs, "batch": args.batch, "rows": rows}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    table = render(results)
    args.out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
