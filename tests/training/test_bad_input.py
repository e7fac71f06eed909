"""Bad input from the command line and numerical faults in training; the catalogue in
docs/bad_input.md names a test for every entry, and this file checks that those tests exist."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import REPO, compose_cfg, final_weights, run_cfg
from hydra.errors import ConfigCompositionException

from st_lightning import losses
from st_lightning.config import check_config
from st_lightning.encoders import SentenceEncoder
from st_lightning.train import train


def test_unknown_config_key_is_refused():
    with pytest.raises(ConfigCompositionException, match="Could not override 'trainer.max_stepz'"):
        compose_cfg(["+experiment=smoke", "trainer.max_stepz=5"])


def test_unknown_loss_name_lists_the_choices():
    with pytest.raises(Exception, match="mnrll") as err:
        compose_cfg(["+experiment=smoke", "loss@losses.nli=mnrll"])
    assert "cosent" in str(err.value)  # the available options are listed


@pytest.mark.parametrize(
    "override,key",
    [
        ("data.batch_size=many", "data.batch_size"),
        ("model.lr=fast", "model.lr"),
        ("trainer.max_steps=1.5", "trainer.max_steps"),
        ("seed=true", "seed"),
    ],
)
def test_non_numeric_settings_fail_before_anything_loads(override, key, tmp_path, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the config was checked")

    monkeypatch.setattr(SentenceEncoder, "from_pretrained", no_loading)
    cfg = run_cfg(tmp_path, ["+experiment=smoke", override])
    with pytest.raises(ValueError, match=re.escape(key) + " must be") as err:
        train(cfg)
    assert "override" in str(err.value)
    assert not (tmp_path / "final").exists() and not (tmp_path / "checkpoints").exists()


def test_resuming_from_a_damaged_checkpoint_fails_before_loading(tmp_path, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the checkpoint was checked")

    monkeypatch.setattr(SentenceEncoder, "from_pretrained", no_loading)
    broken = tmp_path / "last.ckpt"
    broken.write_bytes(b"\x80\x02 half a checkpoint")
    for path, match in [(broken, "truncated, damaged"), (tmp_path / "nope.ckpt", "does not exist")]:
        cfg = run_cfg(tmp_path / "run", ["+experiment=smoke", f"ckpt_path={path}"])
        with pytest.raises((ValueError, FileNotFoundError), match=match):
            train(cfg)
    assert broken.read_bytes() == b"\x80\x02 half a checkpoint"  # left as it was


def test_fsdp1_strategy_string_points_to_the_fsdp_trainer_group():
    cfg = compose_cfg(["+experiment=smoke", "trainer.strategy=fsdp"])
    with pytest.raises(ValueError, match="trainer=fsdp"):
        check_config(cfg)
    check_config(compose_cfg(["+experiment=smoke", "trainer=fsdp"]))  # the supported way


def test_fully_sharded_strategy_refuses_settings_it_fixes():
    from st_lightning.utils.fsdp import FullyShardedStrategy

    overrides = ["+experiment=smoke", "trainer=fsdp", "+trainer.strategy.tensor_parallel_size=2"]
    with pytest.raises(ValueError, match="remove trainer.strategy.tensor_parallel_size"):
        check_config(compose_cfg(overrides))  # before anything loads
    with pytest.raises(ValueError, match="sets save_distributed_checkpoint itself"):
        FullyShardedStrategy(save_distributed_checkpoint=True)


def test_valid_numbers_pass_the_check():
    check_config(compose_cfg(["+experiment=smoke", "model.lr=3", "model.mini_batch_size=8"]))


class NaNOnSecondCall(losses.MultipleNegativesRankingLoss):
    calls = 0

    def forward(self, embeddings, labels=None, **kwargs):
        value = super().forward(embeddings, labels, **kwargs)
        type(self).calls += 1
        return value * float("nan") if type(self).calls == 2 else value


def test_nan_loss_skip_policy_skips_and_counts_the_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(losses, "MultipleNegativesRankingLoss", NaNOnSecondCall)
    NaNOnSecondCall.calls = 0
    cfg = run_cfg(
        tmp_path, ["+experiment=smoke", "evaluator=[]", "model.nan_policy=skip", "logger=none"]
    )
    metrics = train(cfg)
    assert metrics["train/skipped_batches"] == 1.0
    weights = final_weights(tmp_path)
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_nan_loss_raise_policy_names_dataset_and_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(losses, "MultipleNegativesRankingLoss", NaNOnSecondCall)
    NaNOnSecondCall.calls = 0
    cfg = run_cfg(tmp_path, ["+experiment=smoke", "evaluator=[]", "logger=none"])
    with pytest.raises(FloatingPointError, match="dataset 'nli', batch 1") as err:
        train(cfg)
    assert "nan_policy=skip" in str(err.value)
    assert not (tmp_path / "final").exists()  # nothing exported from a failed run


CATALOGUE = REPO / "docs" / "bad_input.md"


def catalogue_rows() -> list[tuple[str, str]]:
    rows = []
    for line in CATALOGUE.read_text().splitlines():
        found = re.findall(r"`(tests/[\w/]+\.py)::(\w+)", line)
        rows += found
    return rows


def test_catalogue_has_enough_entries_and_every_test_exists():
    entries = [
        line
        for line in CATALOGUE.read_text().splitlines()
        if line.startswith("| ") and "`tests/" in line
    ]
    assert len(entries) >= 25, len(entries)
    for path, name in catalogue_rows():
        source = (REPO / path).read_text()
        assert re.search(rf"^def {name}\(", source, re.M), f"{path}::{name} is not a test"
