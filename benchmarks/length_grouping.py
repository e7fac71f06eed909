"""Training-step time with and without length-grouped encoding of a batch's columns.

    python benchmarks/length_grouping.py [--steps 3] [--budgets 256 512 1024 2048]

all-MiniLM-L6-v2, MNRL, batches of 64 bundled NLI triplets (no-duplicates sampler), float32;
forward + backward per step, after a warm-up step. Without a budget, padded layers pad each
column to its longest row (one forward per column); otherwise the rows of all three columns
are sorted by length together and embedded in groups of at most that many token positions
(`length_group_tokens`). Unpadded: one forward for the whole batch whose per-token layers see
real tokens only, attention in length groups of that many positions (`unpadded=true`).
Writes benchmarks/results/length_grouping.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--budgets", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/length_grouping")
    args = parser.parse_args()

    import torch

    from st_lightning import losses
    from st_lightning.data import DatasetSpec, EmbeddingDataModule, NoDuplicatesBatchSampler
    from st_lightning.encoders import SentenceEncoder
    from st_lightning.encoders.batch import BatchEmbedder

    encoder = SentenceEncoder.from_pretrained(
        "sentence-transformers/all-MiniLM-L6-v2", max_seq_length=128
    )
    spec = DatasetSpec(str(ROOT / "data/all-nli"), "triplet", "train")
    data = EmbeddingDataModule(
        {"nli": spec}, encoder.tokenizer, batch_size=64, batch_sampler=NoDuplicatesBatchSampler
    )
    batches = iter(data.train_dataloader())
    warm, *timed = [next(batches) for _ in range(args.steps + 1)]
    real = sum(int(f["attention_mask"].sum()) for b in timed for f in b.features)
    padded = sum(f["attention_mask"].numel() for b in timed for f in b.features)
    loss = losses.MultipleNegativesRankingLoss()
    rows = []
    # (unpadded, length_group_tokens): the backbone's padded forward per column first.
    setups = [(False, None), *[(False, b) for b in args.budgets], (True, 512), (True, None)]
    for unpadded, budget in setups:
        encoder.unpadded, encoder.attention_tokens = unpadded, budget
        embedder = BatchEmbedder(encoder, budget)
        encoder.train()
        for i, batch in enumerate([warm, *timed]):
            if i == 1:
                start = time.perf_counter()
            loss(embedder(batch.features)).backward()
            encoder.zero_grad()
        seconds = (time.perf_counter() - start) / len(timed)
        counts = [embedder.token_counts(b.features) for b in timed]
        rows.append(
            {
                "unpadded": unpadded,
                "length_group_tokens": budget,
                "padding": round(1 - sum(c[0] for c in counts) / sum(c[1] for c in counts), 3),
                "seconds_per_step": round(seconds, 2),
                "triplets_per_second": round(64 / seconds, 1),
            }
        )
        print(rows[-1])
    base = rows[0]["seconds_per_step"]
    none_label = {False: "none (one forward per column)", True: "none (one attention group)"}
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    lines = [
        "# Length grouping and unpadded layers: one MNRL step on 64 NLI triplets "
        "(all-MiniLM-L6-v2)",
        "",
        f"Machine: {machine}. Command: `python benchmarks/length_grouping.py`. Mean of "
        f"{len(timed)} steps after a warm-up. Padding in the full-column batches: "
        f"{1 - real / padded:.0%} of the tokens.",
        "",
        "| unpadded | length_group_tokens | padding in dense layers | s / step | triplets / s "
        "| speedup |",
        "| --- | --- | --- | --- | --- | --- |",
        *[
            f"| {'yes' if r['unpadded'] else 'no'} | "
            f"{r['length_group_tokens'] or none_label[r['unpadded']]} | "
            f"{r['padding']:.0%} | "
            f"{r['seconds_per_step']} | "
            f"{r['triplets_per_second']} | {base / r['seconds_per_step']:.2f}x |"
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
