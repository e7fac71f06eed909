"""`python -m st_lightning.mine`, the mined dataset folder, mining inside a training run
(`DatasetSpec.hard_negatives`), and embedding shared among torchrun processes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from conftest import CONF, REPO, run_cfg
from datasets import Dataset, load_dataset
from dist_helpers import init_gloo, leave_gloo, run_env
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from st_lightning.data import DatasetSpec
from st_lightning.data.sources import load_source
from st_lightning.encoders import SentenceEncoder, tiny_encoder
from st_lightning.mine import mine
from st_lightning.mining import MiningStats, mine_hard_negatives
from st_lightning.mining.embed import embed_texts
from st_lightning.mining.folder import save_mined
from st_lightning.mining.spec import HardNegatives

NLI = str(REPO / "tests/assets/tiny_nli.jsonl")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_model")
    tiny_encoder(seed=2).save_pretrained(path)
    return path


def mine_cfg(overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("mine", overrides=overrides)


def test_the_config_lists_every_setting_with_its_default():
    cfg = OmegaConf.to_container(mine_cfg(["dataset.path=x"]).mining, resolve=False)
    fields = {f.name: f.default for f in dataclasses.fields(HardNegatives)}
    assert list(cfg) == list(fields)
    changed = {k for k in fields if cfg[k] != fields[k]}
    assert changed == {"cache_folder"}  # the command caches embeddings by default


def test_mine_writes_a_folder_that_a_dataset_spec_loads(tmp_path, tiny_dir):
    out = tmp_path / "mined"
    cfg = mine_cfg(
        [
            f"dataset.path={NLI}",
            "dataset.columns=[anchor,positive]",
            f"mining.model={tiny_dir}",
            "mining.num_negatives=2",
            "mining.output_format=n-tuple",
            "mining.output_scores=true",
            f"mining.cache_folder={tmp_path / 'cache'}",
            f"output_dir={out}",
        ]
    )
    assert mine(cfg) == out
    rows = load_source(DatasetSpec(str(out)), "mined")
    assert rows.column_names == ["anchor", "positive", "negative_1", "negative_2", "scores"]
    direct = mine_hard_negatives(
        load_dataset("json", data_files=NLI, split="train").select_columns(["anchor", "positive"]),
        SentenceEncoder.from_pretrained(str(tiny_dir)),
        num_negatives=2,
        output_format="n-tuple",
        output_scores=True,
        show_progress=False,
    )
    assert rows.to_list() == direct.to_list()
    record = json.loads((out / "mining.json").read_text())
    assert record["rows"] == len(rows) and record["settings"]["num_negatives"] == 2
    card = (out / "README.md").read_text()
    assert "num_negatives | `2`" in card and f"{len(rows)} rows" in card
    assert not list(tmp_path.glob(".*partial"))
    with pytest.raises(FileExistsError, match="overwrite=true"):
        mine(cfg)  # an existing folder is never overwritten unasked


def test_bad_mining_config_fails_before_loading(tmp_path):
    cfg = mine_cfg(
        [
            f"dataset.path={NLI}",
            "+mining.num_negative=2",
            "mining.relative_margin=2.0",
            f"output_dir={tmp_path / 'x'}",
        ]  # fmt: skip
    )
    with pytest.raises(ValueError, match="did you mean num_negatives"):
        mine(cfg)
    cfg = mine_cfg([f"dataset.path={NLI}", "mining.model=/nowhere", "mining.relative_margin=2.0",
                    f"output_dir={tmp_path / 'y'}"])  # fmt: skip
    with pytest.raises(ValueError, match="relative_margin must be in"):
        mine(cfg)  # the settings fail before the (missing) model is looked for
    assert not (tmp_path / "y").exists()


def test_an_interrupted_write_leaves_no_folder(tmp_path, monkeypatch):
    rows = Dataset.from_dict({"a": ["x"], "b": ["y"]})

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Dataset, "to_parquet", broken)
    with pytest.raises(OSError, match="disk full"):
        save_mined(rows, tmp_path / "out", settings={}, stats=MiningStats(), source="s", model="m")
    assert not (tmp_path / "out").exists()


def test_the_cli_runs_as_a_user_types_it(tmp_path, tiny_dir):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "st_lightning.mine", f"dataset.path={NLI}",
           f"mining.model={tiny_dir}", "mining.num_negatives=1", f"output_dir={out}",
           f"hydra.run.dir={tmp_path / 'run'}",
           f"mining.cache_folder={tmp_path / 'c'}"]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=REPO, env=run_env(REPO), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Searching" in proc.stderr and "rows/s" in proc.stderr  # progress in rows per second
    assert len(load_source(DatasetSpec(str(out)), "cli")) > 0


def test_a_training_run_mines_its_negatives_first(tmp_path, tiny_dir):
    """`DatasetSpec.hard_negatives`: the data module mines with the given model when it sets
    up, and trains on the mined rows; the mined rows are cached for the next run."""
    from st_lightning.train import train

    cache = tmp_path / "cache"
    overrides = [
        "+experiment=smoke",
        "evaluator=[]",
        "+data.datasets.nli.columns=[anchor,positive]",
        f"+data.datasets.nli.hard_negatives.model={tiny_dir}",
        "+data.datasets.nli.hard_negatives.num_negatives=2",
        "+data.datasets.nli.hard_negatives.output_format=n-tuple",
        f"+data.datasets.nli.hard_negatives.cache_folder={cache}",
        "trainer.max_steps=2",
    ]
    metrics = train(run_cfg(tmp_path / "run", overrides))
    assert np.isfinite(metrics["train/loss"])
    (folder,) = cache.glob("mined_*")
    mined = load_source(DatasetSpec(str(folder)), "cached")
    assert mined.column_names == ["anchor", "positive", "negative_1", "negative_2"]


# ---- torchrun: the embedding is shared ---------------------------------------------------------
def _embed_worker(rank, world, init_file, model_dir, texts, out):
    init_gloo(rank, world, init_file)
    encoder = SentenceEncoder.from_pretrained(model_dir)
    emb = embed_texts(encoder, texts, batch_size=4, show_progress=False)
    torch.save(emb, f"{out}.{rank}")
    leave_gloo()


@pytest.mark.slow
def test_two_processes_embed_half_each_and_return_the_whole(tmp_path, tiny_dir, stsb_sentences):
    texts = stsb_sentences[:41]
    mp.spawn(
        _embed_worker,
        args=(2, str(tmp_path / "init"), str(tiny_dir), texts, str(tmp_path / "emb")),
        nprocs=2,
    )
    single = embed_texts(
        SentenceEncoder.from_pretrained(str(tiny_dir)), texts, batch_size=4, show_progress=False
    )
    for rank in (0, 1):
        torch.testing.assert_close(torch.load(tmp_path / f"emb.{rank}"), single, atol=1e-5, rtol=0)
