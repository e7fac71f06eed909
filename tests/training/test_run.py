"""The run builder from Python: the same guarantees as the command line (atomic checkpoints,
SIGTERM as a resumable stop, exact resume, export of any checkpoint)."""

from __future__ import annotations

import os
import signal

import lightning as L
import pytest
import torch
from conftest import REPO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from st_lightning import EmbeddingModule, losses
from st_lightning.data import DatasetSpec, EmbeddingDataModule, NoDuplicatesBatchSampler
from st_lightning.encoders import tiny_encoder
from st_lightning.evaluation import suites
from st_lightning.export import encoder_from_checkpoint
from st_lightning.run import build
from st_lightning.utils.checkpoint import (
    AtomicCheckpointIO,
    CarryStepLog,
    CheckpointOnSigterm,
    newest_checkpoint,
)
from st_lightning.utils.stop import StopAtStep

STEPS = 6  # 48 rows in batches of 8: one epoch


def python_run(out, callbacks=(), lora=None, **settings):
    """What a notebook user writes: objects, then `build`; no Hydra anywhere."""
    L.seed_everything(3, workers=True)
    encoder = tiny_encoder(seed=1, lora=lora)
    data = EmbeddingDataModule(
        {"nli": DatasetSpec(str(REPO / "tests/assets/tiny_nli.jsonl"))},
        tokenizer=encoder.tokenizer,
        batch_size=8,
        batch_sampler=NoDuplicatesBatchSampler,
    )
    module = EmbeddingModule(encoder, {"nli": losses.MultipleNegativesRankingLoss()}, lr=1e-3)
    evaluators = [suites.stsb("test[:16]", name="sts", data_dir=str(REPO / "data"))]
    return build(
        module,
        data,
        out,
        evaluators=evaluators,
        callbacks=list(callbacks),
        accelerator="cpu",
        precision="32-true",
        max_epochs=1,
        enable_progress_bar=False,
        **settings,
    )


def weights(encoder):
    return {k: v.detach().clone() for k, v in encoder.state_dict().items()}


def test_a_python_run_gets_the_command_lines_guarantees(tmp_path):
    run = python_run(tmp_path)
    trainer = run.trainer
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    kinds = {type(cb) for cb in trainer.callbacks}
    assert {CheckpointOnSigterm, CarryStepLog} <= kinds
    assert trainer._accelerator_connector.use_distributed_sampler is False  # noqa: SLF001
    assert trainer.reload_dataloaders_every_n_epochs == 1
    run.fit()
    out = run.export(model_name="python-run")
    trained = weights(run.module.encoder)
    # Any checkpoint exports, though no run config exists: the checkpoint describes its encoder.
    (checkpoint,) = (tmp_path / "checkpoints").glob("*.ckpt")
    rebuilt = encoder_from_checkpoint(checkpoint)
    for key, value in weights(rebuilt).items():
        torch.testing.assert_close(value, trained[key], rtol=0, atol=0)
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(out["final"]), device="cpu")
    mine = run.module.encoder.eval().encode(["a test sentence"])
    torch.testing.assert_close(
        torch.tensor(st.encode(["a test sentence"])), torch.tensor(mine), rtol=1e-4, atol=1e-5
    )
    assert "python-run" in (out["final"] / "README.md").read_text()


def test_sigterm_stops_a_python_run_resumably_and_it_resumes_exactly(tmp_path):
    full = python_run(tmp_path / "full")
    full.fit()
    expected = weights(full.module.encoder)

    class SigtermAtStep(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    stopped = python_run(tmp_path / "part", callbacks=[SigtermAtStep()])
    with pytest.raises(SystemExit) as exit_:
        stopped.fit()
    assert exit_.value.code == 128 + signal.SIGTERM
    assert (tmp_path / "part" / "checkpoints" / "last.ckpt").is_file()
    resumed = python_run(tmp_path / "part")
    resumed.fit(ckpt_path="last")
    assert resumed.trainer.global_step == STEPS
    for key, value in weights(resumed.module.encoder).items():
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lora", [None, {"r": 4, "alpha": 8, "dropout": 0.1}], ids=["full", "lora"])
def test_stop_and_resume_from_python_equals_a_run_never_stopped(tmp_path, lora):
    full = python_run(tmp_path / "full", lora=lora)
    full.fit()
    # A checkpoint every step, as preemptible jobs keep (Lightning's default one is written at
    # the end of an epoch, and a stop ends the epoch).
    every_step = ModelCheckpoint(tmp_path / "part" / "checkpoints", every_n_train_steps=1)
    part = python_run(tmp_path / "part", callbacks=[StopAtStep(3), every_step], lora=lora)
    part.fit()
    assert part.trainer.global_step == 3
    again = ModelCheckpoint(tmp_path / "part" / "checkpoints", every_n_train_steps=1)
    resumed = python_run(tmp_path / "part", callbacks=[again], lora=lora)  # the same command
    resumed.fit(ckpt_path="last")
    assert resumed.trainer.global_step == STEPS
    expected = weights(full.module.encoder)
    for key, value in weights(resumed.module.encoder).items():
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6)
    if lora:  # the adapter trained (the base did not), and the checkpoint rebuilds with it
        start = weights(tiny_encoder(seed=1, lora=lora))
        changed = [k for k, v in expected.items() if not torch.equal(v, start[k])]
        assert changed and all("lora_" in k for k in changed)
        newest = newest_checkpoint([tmp_path / "part" / "checkpoints"])
        rebuilt = encoder_from_checkpoint(newest)
        assert rebuilt.has_adapter
        for key, value in weights(rebuilt).items():
            torch.testing.assert_close(value, expected[key])


@pytest.mark.parametrize(
    "setting,match",
    [
        ({"use_distributed_sampler": True}, "use_distributed_sampler=True is not supported"),
        ({"reload_dataloaders_every_n_epochs": 0}, "reload_dataloaders_every_n_epochs=0"),
        ({"plugins": [TorchCheckpointIO()]}, "remove the CheckpointIO plugin"),
        ({"strategy": "fsdp"}, "trainer=fsdp"),
    ],
)
def test_settings_that_break_correctness_are_refused(tmp_path, setting, match):
    with pytest.raises(ValueError, match=match):
        python_run(tmp_path, **setting)
