"""Encode the bundled STS-B test pairs with a model and print the cosine Spearman correlation.

Usage: python scripts/stsb_baseline.py [MODEL] [--split test|validation|train]
MODEL defaults to sentence-transformers/all-MiniLM-L6-v2 (the packaged copy when offline).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from datasets import load_dataset
from scipy.stats import spearmanr

from st_lightning.encoders import SentenceEncoder

DATA = Path(__file__).resolve().parents[1] / "data" / "stsb"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--split", default="test", choices=["train", "validation", "test"])
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    pairs = load_dataset(str(DATA), split=args.split)
    encoder = SentenceEncoder.from_pretrained(args.model)
    start = time.perf_counter()
    a = encoder.encode(pairs["sentence1"], batch_size=args.batch_size, normalize_embeddings=True)
    b = encoder.encode(pairs["sentence2"], batch_size=args.batch_size, normalize_embeddings=True)
    seconds = time.perf_counter() - start
    cosine = np.sum(a * b, axis=1)
    rho = spearmanr(cosine, pairs["score"]).statistic
    print(f"model:   {args.model}")
    print(f"STS-B {args.split}: {len(pairs)} pairs encoded in {seconds:.1f} s")
    print(f"cosine Spearman: {rho:.4f}")


if __name__ == "__main__":
    main()
