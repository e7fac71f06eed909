"""`data.eval_datasets`: the logged `val/loss[/<name>]` equals the loss computed by hand over
the eval rows, for one and two datasets and for one and two processes."""

from __future__ import annotations

import csv
import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, run_cfg
from datasets import load_dataset

from st_lightning import EmbeddingModule, losses
from st_lightning.data import DatasetSpec, EmbeddingDataModule
from st_lightning.encoders import tiny_encoder
from st_lightning.run import build
from st_lightning.train import train

NLI = str(REPO / "tests/assets/tiny_nli.jsonl")
STS = str(REPO / "tests/assets/tiny_sts.jsonl")


def mnrl_by_hand(encoder, rows, batch_size, scale=20.0):
    """Row-weighted mean over consecutive batches of cross-entropy over scaled cosine
    similarities of each anchor with every positive and negative of its batch."""
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        a, p, n = (
            torch.as_tensor(encoder.encode(chunk[c])) for c in ("anchor", "positive", "negative")
        )
        docs = torch.cat([p, n])
        scores = scale * F.normalize(a, dim=-1) @ F.normalize(docs, dim=-1).T
        loss = F.cross_entropy(scores, torch.arange(len(a)))
        total += float(loss) * len(a)
        count += len(a)
    return total / count


def cosent_by_hand(encoder, rows, batch_size, scale=20.0):
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        a = torch.as_tensor(encoder.encode(chunk["sentence1"]))
        b = torch.as_tensor(encoder.encode(chunk["sentence2"]))
        cos = scale * F.cosine_similarity(a, b)
        labels = torch.as_tensor(chunk["score"], dtype=torch.float32)
        diff = cos[None, :] - cos[:, None]  # (i, j): cos_j - cos_i, counted where label_i > label_j
        diff = diff[labels[:, None] > labels[None, :]]
        loss = torch.logsumexp(torch.cat([torch.zeros(1), diff]), dim=0)
        total += float(loss) * len(a)
        count += len(a)
    return total / count


def python_run(out, eval_datasets, datasets, loss_map, **settings):
    L.seed_everything(3, workers=True)
    encoder = tiny_encoder(seed=1)
    data = EmbeddingDataModule(
        datasets,
        tokenizer=encoder.tokenizer,
        batch_size=8,
        eval_datasets=eval_datasets,
        eval_batch_size=6,
    )
    module = EmbeddingModule(encoder, loss_map, lr=1e-3)
    run = build(
        module,
        data,
        out,
        accelerator="cpu",
        **{"precision": "32-true", "max_steps": 3, "enable_progress_bar": False, **settings},
    )
    return run, encoder


def history(run, stage):
    (entry,) = [
        e for e in run.evaluation.history if e["evaluator"] == "loss" and e["stage"] == stage
    ]
    return entry["metrics"]


def test_eval_loss_equals_the_loss_by_hand(tmp_path):
    eval_rows = load_dataset("json", data_files=NLI, split="train[20:45]")  # 25 rows: 6,6,6,6,1
    run, encoder = python_run(
        tmp_path,
        DatasetSpec(NLI, split="train[20:45]"),
        {"nli": DatasetSpec(NLI, split="train[:32]")},
        {"nli": losses.MultipleNegativesRankingLoss()},
    )
    initial = tiny_encoder(seed=1).eval()
    metrics = run.fit()
    before, after = history(run, "before"), history(run, "after")
    assert before["all"] == pytest.approx(mnrl_by_hand(initial, eval_rows, 6), abs=1e-4)
    assert after["all"] == pytest.approx(mnrl_by_hand(encoder.eval(), eval_rows, 6), abs=1e-4)
    assert before["nli"] == before["all"] and after["all"] != pytest.approx(before["all"])
    assert metrics["val/loss"] == pytest.approx(after["all"])
    assert metrics["val/loss/nli"] == pytest.approx(after["nli"])
    rows = list(csv.DictReader((tmp_path / "eval" / "loss.csv").open()))
    assert rows[0]["stage"] == "before" and rows[-1]["stage"] == "after"


def test_two_eval_datasets_each_with_their_loss(tmp_path):
    nli_rows = load_dataset("json", data_files=NLI, split="train[:18]")
    sts_rows = load_dataset("json", data_files=STS, split="train[:13]")
    run, _ = python_run(
        tmp_path,
        {"nli": DatasetSpec(NLI, split="train[:18]"), "sts": DatasetSpec(STS, split="train[:13]")},
        {"nli": DatasetSpec(NLI), "sts": DatasetSpec(STS)},
        {"nli": losses.MultipleNegativesRankingLoss(), "sts": losses.CoSENTLoss()},
        max_steps=1,
    )
    initial = tiny_encoder(seed=1).eval()
    run.fit()
    before = history(run, "before")
    nli, sts = mnrl_by_hand(initial, nli_rows, 6), cosent_by_hand(initial, sts_rows, 6)
    assert before["nli"] == pytest.approx(nli, abs=1e-4)
    assert before["sts"] == pytest.approx(sts, abs=1e-4)
    assert before["all"] == pytest.approx((18 * nli + 13 * sts) / 31, abs=1e-4)


def test_eval_dataset_names_and_columns_are_checked_before_training(tmp_path):
    encoder = tiny_encoder(seed=1)
    with pytest.raises(ValueError, match="not training dataset names"):
        EmbeddingDataModule(
            {"nli": DatasetSpec(NLI)}, encoder.tokenizer, eval_datasets={"x": DatasetSpec(NLI)}
        )
    with pytest.raises(ValueError, match="name it by the training dataset"):
        EmbeddingDataModule(
            {"a": DatasetSpec(NLI), "b": DatasetSpec(NLI)},
            encoder.tokenizer,
            eval_datasets=DatasetSpec(NLI),
        )
    # An STS eval set under the MNRL dataset's name: the loss refuses its score column.
    run, _ = python_run(
        tmp_path,
        DatasetSpec(STS),
        {"nli": DatasetSpec(NLI)},
        {"nli": losses.MultipleNegativesRankingLoss()},
    )
    with pytest.raises(ValueError, match="nli"):
        run.fit()
    assert not (tmp_path / "checkpoints").exists() or not list((tmp_path / "checkpoints").iterdir())


def eval_csv(path):
    return {r["stage"]: r for r in csv.DictReader((path / "eval" / "loss.csv").open())}


@pytest.mark.slow
def test_two_processes_log_the_single_process_value_and_can_monitor_it(tmp_path):
    """Under DDP each rank computes whole batches and the sums are reduced: the value before
    training (same weights) equals one process's, also with a loss that gathers across ranks;
    val/loss is a checkpoint monitor."""
    common = [
        "+experiment=smoke",
        "evaluator=[]",
        f"+data.eval_datasets.nli.path={NLI}",
        "+data.eval_datasets.nli.split='train[:21]'",
        "+data.eval_batch_size=4",
        "trainer.max_steps=2",
        "trainer.precision=32-true",
        "callbacks.model_checkpoint.monitor=val/loss",
        "callbacks.model_checkpoint.mode=min",
    ]
    single = train(run_cfg(tmp_path / "one", common))
    two = train(
        run_cfg(tmp_path / "two", [*common, "trainer=ddp_sim", "loss@losses.nli=mnrl_gathered"])
    )
    one_before = float(eval_csv(tmp_path / "one")["before"]["all"])
    two_before = float(eval_csv(tmp_path / "two")["before"]["all"])
    assert two_before == pytest.approx(one_before, abs=1e-5)
    assert math.isfinite(single["val/loss"]) and math.isfinite(two["val/loss"])
