"""Configs are checked against the signatures of what they build, before anything loads."""

from __future__ import annotations

import pytest
from conftest import compose_cfg, run_cfg

import st_lightning.encoders.st_format
import st_lightning.encoders.tiny
from st_lightning.config import check_config, signature_of
from st_lightning.train import train


@pytest.fixture
def nothing_loads(monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the config was checked")

    monkeypatch.setattr(st_lightning.encoders.tiny, "BertModel", no_loading)
    monkeypatch.setattr(st_lightning.encoders.st_format, "load_encoder", no_loading)


@pytest.mark.parametrize(
    "override,path,suggestion",
    [
        ("+model.encoder.hiden_size=16", "model.encoder.hiden_size", "hidden_size"),
        ("+model.lr_multiplier={}", "model.lr_multiplier", "lr_multipliers"),
        ("+losses.nli.scal=10", "losses.nli.scal", "scale"),
        ("+evaluator.sts_tiny.batch_sise=8", "evaluator.sts_tiny.batch_sise", "batch_size"),
        ("+logger.csv.flush_logs_every_n_step=5", "logger.csv.flush_logs_every_n_step", None),
        ("+data.datasets.nli.max_sample=3", "data.datasets.nli.max_sample", "max_samples"),
        ("+data.batch_sampler.sed=3", "data.batch_sampler.sed", "seed"),
        ("+callbacks.model_checkpoint.monitr=x", "callbacks.model_checkpoint.monitr", "monitor"),
        ("+trainer.max_step=3", "trainer.max_step", "max_steps"),
        ("+evaluation.every_n_step=3", "evaluation.every_n_step", "every_n_steps"),
        ("+export.fnal=false", "export.fnal", "final"),
    ],
)
def test_a_misspelt_key_anywhere_fails_before_loading_with_its_path(
    override, path, suggestion, tmp_path, nothing_loads
):
    with pytest.raises(ValueError, match="nothing was loaded") as err:
        train(run_cfg(tmp_path, ["+experiment=smoke", override]))
    message = str(err.value)
    assert f"{path}: not an argument of" in message
    if suggestion:
        assert f"did you mean {suggestion}?" in message
    assert not (tmp_path / "config.yaml").exists()  # nothing written either


def test_the_wandb_logger_and_the_minilm_loader_refuse_typos_too():
    cfg = compose_cfg(["+experiment=nli_triplet", "logger=wandb", "+logger.wandb.projct=x"])
    with pytest.raises(ValueError, match=r"logger\.wandb\.projct: .*did you mean project\?"):
        check_config(cfg)
    cfg = compose_cfg(["+experiment=nli_triplet", "+model.encoder.pooling=cls"])
    with pytest.raises(ValueError, match=r"model\.encoder\.pooling: .*did you mean pooling_mode"):
        check_config(cfg)


def test_every_problem_is_listed_in_one_error():
    cfg = compose_cfg(
        [
            "+experiment=smoke",
            "data.batch_size=6a",
            "model.scheduler=step",
            "+model.adam_betas=[0.9]",
            "+losses.nli.scal=10",
            "model.warmup_ratio=null",
            "trainer.use_distributed_sampler=true",
        ]
    )
    with pytest.raises(ValueError) as err:
        check_config(cfg)
    message = str(err.value)
    assert "6 problem(s)" in message
    assert "trainer.use_distributed_sampler=True is not supported" in message
    assert "data.batch_size must be int, got '6a' (str)" in message
    assert "model.scheduler must be one of 'linear', 'cosine', 'constant', got 'step'" in message
    assert "model.adam_betas must be" in message
    assert "model.warmup_ratio must be float, got None" in message
    assert "losses.nli.scal: not an argument" in message


@pytest.mark.parametrize(
    "override", ["model.lr=3", "model.mini_batch_size=8", "trainer.precision=auto", "seed=1"]
)
def test_valid_values_pass(override):
    check_config(compose_cfg(["+experiment=smoke", override]))


def test_a_subclass_taking_kwargs_accepts_its_parents_arguments():
    from st_lightning.utils.fsdp import FullyShardedStrategy

    names, _, open_ended = signature_of(FullyShardedStrategy)
    assert "data_parallel_size" in names and "timeout" in names and not open_ended


def test_a_val_loss_monitor_needs_eval_data_and_a_logged_name():
    monitor = ["callbacks.model_checkpoint.monitor=val/loss", "callbacks.model_checkpoint.mode=min"]
    with pytest.raises(ValueError, match="needs evaluation data: set data.eval_datasets"):
        check_config(compose_cfg(["+experiment=smoke", *monitor]))
    eval_data = ["+data.eval_datasets.nli.path=tests/assets/tiny_nli.jsonl"]
    check_config(compose_cfg(["+experiment=smoke", *monitor, *eval_data]))
    wrong = ["callbacks.model_checkpoint.monitor=val/loss/sts"]
    with pytest.raises(ValueError, match="'val/loss/sts' is not logged; losses are"):
        check_config(compose_cfg(["+experiment=smoke", *wrong, *eval_data]))


def test_hard_negative_settings_are_checked_by_name_and_type():
    cfg = compose_cfg(
        [
            "+experiment=scifact_hardneg",
            "+data.datasets.scifact.hard_negatives.num_negative=3",
            "data.datasets.scifact.hard_negatives.relative_margin=true",
        ]
    )
    with pytest.raises(ValueError) as err:
        check_config(cfg)
    assert "hard_negatives.num_negative: not an argument" in str(err.value)
    assert "did you mean num_negatives" in str(err.value)
    assert "hard_negatives.relative_margin must be float or null, got True" in str(err.value)
