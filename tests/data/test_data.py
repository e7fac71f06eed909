"""The bundled data: row counts as recorded, Hub column layouts, and a reproducible build."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from conftest import DATA, REPO
from datasets import load_dataset

COLUMNS = {
    "all-nli/triplet": ["anchor", "positive", "negative"],
    "all-nli/pair": ["anchor", "positive"],
    "all-nli/pair-class": ["premise", "hypothesis", "label"],
    "all-nli/pair-score": ["sentence1", "sentence2", "score"],
    "stsb": ["sentence1", "sentence2", "score"],
    "quora-duplicates/pair": ["anchor", "positive"],
    "quora-duplicates/pair-class": ["sentence1", "sentence2", "label"],
    "scifact-pairs": ["query", "answer"],
}
COUNTS = json.loads((DATA / "counts.json").read_text())
SHARED = REPO.parent / "shared" / "data"


def parquet_path(key: str):
    parts = key.split("/")
    if parts[0] in ("stsb", "scifact-pairs"):
        return DATA / parts[0] / "default" / f"{parts[1]}.parquet"
    return DATA.joinpath(*parts[:-1]) / f"{parts[-1]}.parquet"


@pytest.mark.parametrize("key", [k for k in COUNTS if not k.startswith("scifact")])
def test_rows_and_columns(key):
    table = pq.read_table(parquet_path(key))
    assert table.num_rows == COUNTS[key]
    subset = key.rsplit("/", 1)[0]
    assert table.column_names == COLUMNS[subset]
    data = table.to_pydict()
    for name, values in data.items():
        if name == "score":
            assert all(0.0 <= v <= 1.0 for v in values)
        elif name == "label":
            assert set(values) <= {0, 1, 2}
        else:
            assert all(isinstance(v, str) and v.strip() for v in values), name
    assert f"| `{key}` | {COUNTS[key]} |" in (DATA / "README.md").read_text()


def test_loads_like_the_hub_dataset():
    triplets = load_dataset(str(DATA / "all-nli"), "triplet", split="dev[:10]")
    assert triplets.column_names == ["anchor", "positive", "negative"] and len(triplets) == 10
    sts = load_dataset(str(DATA / "stsb"), split="validation")
    assert len(sts) == 1500


def test_scifact_layout():
    queries = [json.loads(line) for line in (DATA / "scifact/queries.jsonl").open()]
    qrels = (DATA / "scifact/qrels/test.tsv").read_text().splitlines()
    assert len(queries) == 1109 and qrels[0] == "query-id\tcorpus-id\tscore"
    assert len(qrels) - 1 == COUNTS["scifact/qrels/test"] == 339
    assert not (DATA / "scifact/qrels/test.tsv").read_bytes().count(b"\r")


def test_licence_notes_beside_the_data():
    readme = (DATA / "README.md").read_text()
    assert "non-commercial" in readme and (DATA / "stsb/LICENSE.txt").exists()


@pytest.mark.skipif(not SHARED.exists(), reason="raw files in ../shared/data are not here")
def test_build_is_reproducible(tmp_path):
    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts/build_data.py"),
            "--raw",
            str(SHARED),
            "--out",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    assert json.loads((tmp_path / "counts.json").read_text()) == COUNTS
    for key in COUNTS:
        if not key.startswith("scifact"):
            rebuilt = pq.read_table(tmp_path / parquet_path(key).relative_to(DATA))
            assert rebuilt.equals(pq.read_table(parquet_path(key))), key
