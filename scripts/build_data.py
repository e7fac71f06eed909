"""Build the bundled data sets in ``data/`` from the raw public files in ``../shared/data``.

The output mirrors the column layouts of the Hub data sets that users of sentence-transformers
know, so a config switches between the Hub and the bundled copy by its path alone:

    load_dataset("sentence-transformers/all-nli", "triplet", split="train")   # Hub
    load_dataset("data/all-nli", "triplet", split="train")                    # bundled

Run: ``python scripts/build_data.py [--raw ../shared/data] [--out data]``. The output is
deterministic (same input bytes give the same parquet rows).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import shutil
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

NLI_CLASS = {"entailment": 0, "neutral": 1, "contradiction": 2}
NLI_SCORE = {"entailment": 1.0, "neutral": 0.5, "contradiction": 0.0}
# The SNLI train sample ships numeric labels; the mapping is inferred (see SOURCES.md).
SNLI_SAMPLE_LABEL = {"1": "neutral", "2": "contradiction", "3": "entailment"}


def read_nli_csv(path: Path) -> list[tuple[str, str, str]]:
    """(premise, hypothesis, label name) from an SNLI/MultiNLI csv; drops no-consensus rows."""
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for rec in csv.DictReader(f):
            if rec["label"] in NLI_CLASS:
                rows.append((rec["sentence1"], rec["sentence2"], rec["label"]))
    return rows


def read_snli_sample(path: Path) -> list[tuple[str, str, str]]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            label, _, premise, hypothesis = line.rstrip("\n").split("\t")
            rows.append((premise, hypothesis, SNLI_SAMPLE_LABEL[label]))
    return rows


def nli_subsets(rows: list[tuple[str, str, str]]) -> dict[str, dict[str, list]]:
    """The four all-nli subsets, column-major, from labelled (premise, hypothesis) rows."""
    clean = [(p.strip(), h.strip(), lab) for p, h, lab in rows if p.strip() and h.strip()]
    pair_class = {
        "premise": [p for p, _, _ in clean],
        "hypothesis": [h for _, h, _ in clean],
        "label": [NLI_CLASS[lab] for _, _, lab in clean],
    }
    pair_score = {
        "sentence1": [p for p, _, _ in clean],
        "sentence2": [h for _, h, _ in clean],
        "score": [NLI_SCORE[lab] for _, _, lab in clean],
    }
    entailed = [(p, h) for p, h, lab in clean if lab == "entailment"]
    pair = {"anchor": [p for p, _ in entailed], "positive": [h for _, h in entailed]}
    # A triplet needs an entailed and a contradicted hypothesis of the same premise; pair each
    # entailment with the premise's contradictions in turn, so no row is invented.
    by_premise: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for p, h, lab in clean:
        by_premise[p][lab].append(h)
    triplet: dict[str, list] = {"anchor": [], "positive": [], "negative": []}
    for p, groups in by_premise.items():
        negatives = groups.get("contradiction", [])
        for i, pos in enumerate(groups.get("entailment", [])):
            if negatives:
                triplet["anchor"].append(p)
                triplet["positive"].append(pos)
                triplet["negative"].append(negatives[i % len(negatives)])
    return {"triplet": triplet, "pair": pair, "pair-class": pair_class, "pair-score": pair_score}


def read_stsb(path: Path) -> dict[str, list]:
    cols: dict[str, list] = {"sentence1": [], "sentence2": [], "score": []}
    with path.open(encoding="utf-8") as f:
        for line in f:
            # Unbalanced quotes in the text: split on tabs, never parse as CSV.
            fields = line.rstrip("\n").split("\t")
            cols["sentence1"].append(fields[5])
            cols["sentence2"].append(fields[6])
            cols["score"].append(float(fields[4]) / 5.0)
    return cols


def read_quora(path: Path) -> dict[str, dict[str, list]]:
    pair_class: dict[str, list] = {"sentence1": [], "sentence2": [], "label": []}
    repaired = 0
    with path.open(encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) == 5 and fields[4][-1:] in "01" and fields[4][-2:-1] == " ":
                # The one known malformed line: the tab before the label is missing.
                fields = fields[:4] + [fields[4][:-2], fields[4][-1]]
                repaired += 1
            if len(fields) != 6:
                raise ValueError(f"{path}: unexpected row with {len(fields)} fields: {line[:80]!r}")
            pair_class["sentence1"].append(fields[3])
            pair_class["sentence2"].append(fields[4])
            pair_class["label"].append(int(fields[5]))
    pair = {
        "anchor": [
            s
            for s, lab in zip(pair_class["sentence1"], pair_class["label"], strict=True)
            if lab == 1
        ],
        "positive": [
            s
            for s, lab in zip(pair_class["sentence2"], pair_class["label"], strict=True)
            if lab == 1
        ],
    }
    print(f"quora: repaired {repaired} malformed line(s)")
    return {"pair": pair, "pair-class": pair_class}


def write_parquet(cols: dict[str, list], path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)
    return len(next(iter(cols.values())))


def dataset_card(title: str, configs: dict[str, list[str]], licence: str) -> str:
    """A README whose YAML header tells `datasets.load_dataset` the subsets and splits."""
    lines = ["---", "configs:"]
    for name, splits in configs.items():
        lines += [f"- config_name: {name}", "  data_files:"]
        for split in splits:
            lines += [f"  - split: {split}", f"    path: {name}/{split}.parquet"]
    lines += ["---", "", f"# {title}", "", licence, ""]
    return "\n".join(lines)


DATA_README = """# Bundled data

Real public data sets for offline tests and experiments, built by `scripts/build_data.py` (or
`make data`) from the raw files described in the workplace's `shared/data/SOURCES.md`. They are
laid out like the Hub data sets of the same names, so a config switches by path alone:
`load_dataset("data/all-nli", "triplet", split="train")` here,
`load_dataset("sentence-transformers/all-nli", "triplet", split="train")` on the Hub.

**Not part of the wheel.** Several licences are non-commercial (SciFact, Quora, parts of STS-B).
Keep these files for tests and examples only.

| folder | what | columns | licence |
| --- | --- | --- | --- |
| `all-nli/` | subsets `triplet`, `pair`, `pair-class`, `pair-score`; train = MultiNLI dev matched + mismatched + an 18k SNLI train sample, dev = SNLI dev, test = SNLI test (no-consensus `-` rows dropped) | triplet: anchor, positive, negative; pair: anchor, positive; pair-class: premise, hypothesis, label (0 entailment, 1 neutral, 2 contradiction); pair-score: sentence1, sentence2, score (1 / 0.5 / 0) | SNLI CC BY-SA 4.0; MultiNLI OANC (fiction: CC BY / CC BY-SA 3.0) |
| `stsb/` | STS Benchmark train / validation / test | sentence1, sentence2, score (0-5 divided by 5) | scores CC BY-SA 4.0, texts per `stsb/LICENSE.txt` |
| `quora-duplicates/` | a GLUE QQP subset; `pair` holds the duplicates only | pair: anchor, positive; pair-class: sentence1, sentence2, label | Quora ToS, **non-commercial** |
| `scifact-pairs/` | (query, answer) pairs from the SciFact train qrels: a stand-in for natural-questions | query, answer | CC BY-NC 2.0, **non-commercial** |
| `scifact/` | BEIR SciFact: `corpus.jsonl.gz`, `queries.jsonl`, `qrels/{train,test}.tsv` (LF line endings) | BEIR layout | CC BY-NC 2.0, **non-commercial** |

A triplet pairs each entailed hypothesis of a premise with one of that premise's contradicted
hypotheses (taken in turn), so no row is invented; premises without both give no triplet.
The one malformed Quora line (tab before the label missing) is repaired, not dropped.

## Row counts
"""


def data_readme(counts: dict[str, int]) -> str:
    rows = "\n".join(f"| `{key}` | {n} |" for key, n in counts.items())
    return DATA_README + "\n| split | rows |\n| --- | --- |\n" + rows + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--raw", type=Path, default=root.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=root / "data")
    args = parser.parse_args()
    raw, out = args.raw, args.out
    counts: dict[str, int] = {}

    nli = raw / "nli"
    splits = {
        "train": read_nli_csv(nli / "multinli/multinli_1.0_dev_matched.csv")
        + read_nli_csv(nli / "multinli/multinli_1.0_dev_mismatched.csv")
        + read_snli_sample(nli / "snli_train_sample/train.csv"),
        "dev": read_nli_csv(nli / "snli/snli_1.0_dev.csv"),
        "test": read_nli_csv(nli / "snli/snli_1.0_test.csv"),
    }
    for split, rows in splits.items():
        for subset, cols in nli_subsets(rows).items():
            counts[f"all-nli/{subset}/{split}"] = write_parquet(
                cols, out / "all-nli" / subset / f"{split}.parquet"
            )
    subsets = ["triplet", "pair", "pair-class", "pair-score"]
    (out / "all-nli/README.md").write_text(
        dataset_card(
            "all-nli (bundled stand-in)",
            {s: ["train", "dev", "test"] for s in subsets},
            "Built from SNLI 1.0 (CC BY-SA 4.0) and MultiNLI 1.0 (OANC; fiction parts CC BY / "
            "CC BY-SA 3.0). train = MultiNLI dev matched + mismatched + an 18k SNLI train sample; "
            "dev = SNLI dev; test = SNLI test. Labels: 0 entailment, 1 neutral, 2 contradiction.",
        )
    )

    sts = raw / "stsbenchmark"
    for split, name in [("train", "train"), ("validation", "dev"), ("test", "test")]:
        counts[f"stsb/{split}"] = write_parquet(
            read_stsb(sts / f"sts-{name}.csv"), out / "stsb" / "default" / f"{split}.parquet"
        )
    (out / "stsb/README.md").write_text(
        dataset_card(
            "stsb (bundled stand-in)",
            {"default": ["train", "validation", "test"]},
            "STS Benchmark (Cer et al., 2017); scores divided by 5 to lie in [0, 1]. Scores are "
            "CC BY-SA 4.0; the texts keep their own licences (see LICENSE.txt).",
        )
    )
    shutil.copy(sts / "LICENSE.txt", out / "stsb" / "LICENSE.txt")

    for subset, cols in read_quora(raw / "quora/qqp_new_dev.tsv").items():
        counts[f"quora-duplicates/{subset}/train"] = write_parquet(
            cols, out / "quora-duplicates" / subset / "train.parquet"
        )
    (out / "quora-duplicates/README.md").write_text(
        dataset_card(
            "quora-duplicates (bundled stand-in)",
            {"pair": ["train"], "pair-class": ["train"]},
            "A subset of the GLUE QQP rows. Quora Terms of Service: NON-COMMERCIAL use only.",
        )
    )

    sci_src, sci = raw / "ir/scifact", out / "scifact"
    (sci / "qrels").mkdir(parents=True, exist_ok=True)
    shutil.copy(sci_src / "corpus.jsonl.gz", sci / "corpus.jsonl.gz")
    shutil.copy(sci_src / "queries.jsonl", sci / "queries.jsonl")
    for split in ["train", "test"]:
        text = (sci_src / "qrels" / f"{split}.tsv").read_bytes().replace(b"\r\n", b"\n")
        (sci / "qrels" / f"{split}.tsv").write_bytes(text)
        counts[f"scifact/qrels/{split}"] = text.count(b"\n") - 1
    with gzip.open(sci / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        counts["scifact/corpus"] = sum(1 for _ in f)
    with (sci / "queries.jsonl").open(encoding="utf-8") as f:
        counts["scifact/queries"] = sum(1 for line in f if json.loads(line))

    # (query, answer) pairs from the train qrels: a stand-in for natural-questions.
    with (sci / "queries.jsonl").open(encoding="utf-8") as f:
        queries = {q["_id"]: q["text"] for q in map(json.loads, f)}
    with gzip.open(sci / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        corpus = {d["_id"]: f"{d['title']} {d['text']}".strip() for d in map(json.loads, f)}
    qrels = [line.split("\t") for line in (sci / "qrels/train.tsv").read_text().splitlines()[1:]]
    pairs = {"query": [queries[q] for q, _, _ in qrels], "answer": [corpus[d] for _, d, _ in qrels]}
    counts["scifact-pairs/train"] = write_parquet(
        pairs, out / "scifact-pairs" / "default" / "train.parquet"
    )
    (out / "scifact-pairs/README.md").write_text(
        dataset_card(
            "scifact-pairs (bundled stand-in for natural-questions)",
            {"default": ["train"]},
            "SciFact train claims with the abstracts that support or refute them. CC BY-NC 2.0, "
            "NON-COMMERCIAL.",
        )
    )

    (out / "counts.json").write_text(json.dumps(counts, indent=2) + "\n")
    (out / "README.md").write_text(data_readme(counts))
    width = max(map(len, counts))
    for key, n in counts.items():
        print(f"{key:<{width}}  {n:>7}")


if __name__ == "__main__":
    main()
