"""A mined dataset on disk: `default/train.parquet`, `mining.json` (settings and statistics)
and a README card, laid out like a Hub dataset so `DatasetSpec(path=folder)` loads it."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from datasets import Dataset, load_dataset

from st_lightning.mining.miner import MiningStats

DATA_FILE = "default/train.parquet"


def save_mined(
    dataset: Dataset,
    folder: str | Path,
    *,
    settings: dict[str, Any],
    stats: MiningStats,
    source: str,
    model: str,
    overwrite: bool = False,
) -> Path:
    """Write the mined rows and their card to `folder`, all at once: they are written to a
    sibling folder first and moved into place, so an interrupted run leaves no half folder."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{folder} already holds files; choose another output folder or set overwrite=true."
        )
    tmp = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "default").mkdir(parents=True)
    dataset.to_parquet(str(tmp / DATA_FILE))
    record = {
        "source": source,
        "model": model,
        "settings": settings,
        "stats": asdict(stats),
        "columns": dataset.column_names,
        "rows": len(dataset),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (tmp / "mining.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    (tmp / "README.md").write_text(card(record))
    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp.replace(folder)
    return folder


def load_mined(folder: str | Path) -> Dataset:
    return load_dataset(str(folder), split="train")


def card(record: dict[str, Any]) -> str:
    stats, settings = record["stats"], record["settings"]
    shown = {k: v for k, v in settings.items() if v is not None}
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        f"    path: {DATA_FILE}",
        "tags:",
        "- sentence-transformers",
        "- hard-negatives",
        "---",
        "",
        "# Mined hard negatives",
        "",
        f"{record['rows']:,} rows ({', '.join(record['columns'])}) mined from `{record['source']}` "
        f"with `{record['model']}` by st_lightning's `mine_hard_negatives` on "
        f"{record['created']}.",
        "",
        "## Settings",
        "",
        "| setting | value |",
        "| --- | --- |",
        *[f"| {k} | `{v}` |" for k, v in shown.items()],
        "",
        "## What was found",
        "",
        f"- Input rows: {stats['rows_in']:,}; unique queries: {stats['queries']:,}; corpus: "
        f"{stats['corpus']:,} unique texts; candidates per query: {stats['range_max']:,}.",
        "- Candidates skipped by filter: "
        + (", ".join(f"{k} {v:,}" for k, v in stats["skipped"].items()) or "none")
        + ".",
        f"- (anchor, positive) rows left without enough negatives (n-tuple only): "
        f"{stats['rows_without_enough_negatives']:,}.",
        "",
        "| scores | count | mean | median | min | max |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in ("positive_scores", "negative_scores"):
        s = stats[name]
        cells = [f"{s[k]:.4f}" if k in s else "-" for k in ("mean", "median", "min", "max")]
        lines.append(
            f"| {name.split('_')[0]} | {s.get('count', 0):,} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "Load it with `DatasetSpec(path=<this folder>)` in st_lightning, or "
        '`datasets.load_dataset(<this folder>, split="train")`.',
        "",
    ]
    return "\n".join(lines)
