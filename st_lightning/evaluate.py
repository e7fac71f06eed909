"""Evaluate a saved model (folder, Hub id, or training checkpoint) on bundled suites.

    python -m st_lightning.evaluate MODEL [--suite stsb-test nli-test scifact-test]
        [--batch-size 64] [--data-dir data] [--output metrics.json]

MODEL is a sentence-transformers folder, a Hub id, or a `.ckpt` written by st_lightning.train.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from st_lightning.evaluation.suites import SUITES


def load_model(path: str):
    from st_lightning.encoders import SentenceEncoder

    if path.endswith(".ckpt"):
        from st_lightning.export import encoder_from_checkpoint

        return encoder_from_checkpoint(path)
    return SentenceEncoder.from_pretrained(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument(
        "--suite", nargs="+", default=["stsb-test", "nli-test"], choices=sorted(SUITES)
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--output", type=Path, help="write the metrics as JSON here")
    args = parser.parse_args(argv)
    encoder = load_model(args.model)
    results: dict[str, dict[str, float]] = {}
    for suite in args.suite:
        evaluator = SUITES[suite](data_dir=args.data_dir, batch_size=args.batch_size)
        start = time.perf_counter()
        metrics = evaluator.evaluate(encoder)
        results[evaluator.name] = metrics
        print(f"{evaluator.name} ({time.perf_counter() - start:.1f} s)")
        for key, value in metrics.items():
            marker = "  <- primary" if key == evaluator.primary_metric else ""
            print(f"  {key:<28} {value:.4f}{marker}")
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
