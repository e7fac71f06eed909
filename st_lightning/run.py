"""One run builder for the command line, Python and notebooks.

    run = build(module, data, output_dir="runs/x", evaluators={...}, max_epochs=1)
    metrics = run.fit()            # or run.fit(ckpt_path="last") for a requeued job
    run.export()                   # runs/x/final (and best/) in the sentence-transformers layout

`build` makes the Trainer with what correctness needs: the Trainer settings st_lightning's
samplers rely on (a contradicting setting is refused), atomic checkpoint files, SIGTERM handled
as a resumable stop, the last step's log row carried in checkpoints, `precision="auto"`, and the
evaluator callback. `python -m st_lightning.train` composes a config and calls the same builder.
"""

from __future__ import annotations

import logging
import signal
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.callbacks import ProgressBar as ProgressBarBase
from lightning.pytorch.loggers import Logger
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from st_lightning.data.datamodule import EmbeddingDataModule
from st_lightning.encoders.description import EncoderDescription
from st_lightning.evaluation.base import Evaluator
from st_lightning.evaluation.callback import EvaluatorCallback
from st_lightning.export import read_checkpoint
from st_lightning.export_run import export_models, summary_table
from st_lightning.module import EmbeddingModule
from st_lightning.utils.checkpoint import (
    AtomicCheckpointIO,
    CarryStepLog,
    CheckpointOnSigterm,
    newest_checkpoint,
)
from st_lightning.utils.console import ProgressBar, quiet_third_party, run_line
from st_lightning.utils.fsdp import check_strategy, whole_copy
from st_lightning.utils.logging import log_model_artifacts
from st_lightning.utils.memory import bound_kernel_cache
from st_lightning.utils.precision import auto_precision
from st_lightning.utils.record import RunRecord

log = logging.getLogger(__name__)

# Trainer settings st_lightning's data path needs. Its samplers shard by rank themselves (the
# same dataset on every rank at a step), and each epoch's loader is built for that epoch, whose
# batch count can differ from the last one's.
REQUIRED_TRAINER = {"use_distributed_sampler": False, "reload_dataloaders_every_n_epochs": 1}
# Defaults that suit embedding training: evaluation runs in the evaluator callback.
# Lightning's model summary is replaced by one line of st_lightning's (`run_line`).
DEFAULT_TRAINER = {"limit_val_batches": 0, "num_sanity_val_steps": 0, "enable_model_summary": False}


@dataclass
class Run:
    """A built run: `fit` it, then `export` the trained model."""

    trainer: L.Trainer
    module: EmbeddingModule
    data: EmbeddingDataModule
    evaluation: EvaluatorCallback
    output_dir: Path
    base_model: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    def fit(self, ckpt_path: str | None = None, check: bool = True) -> dict[str, float]:
        """Train; returns the final logged metrics. `ckpt_path`: a checkpoint to resume from,
        or "last" for the newest one this run's directories hold (none yet: start). `check`:
        read the checkpoint first, so a damaged file fails clearly (skip if already done)."""
        path = self.resume_path(ckpt_path)
        if path is not None and check:
            read_checkpoint(path)  # a missing or damaged file fails here, before loading
        if self.trainer.is_global_zero:
            log.info(run_line(self.trainer, self.module))
        try:
            # weights_only: resuming never runs pickled code from a checkpoint file.
            self.trainer.fit(self.module, datamodule=self.data, ckpt_path=path, weights_only=True)
        except SIGTERMException:
            # CheckpointOnSigterm has saved the run; exit as a process ended by SIGTERM does.
            raise SystemExit(128 + signal.SIGTERM) from None
        metrics = self.trainer.callback_metrics.items()
        return {k: float(v) for k, v in metrics if v.numel() == 1}

    def resume_path(self, ckpt_path: str | None) -> str | None:
        """`ckpt_path` as given, or for "last" the newest checkpoint in this run's checkpoint
        directories, so a requeued job runs the same command every time."""
        if ckpt_path != "last":
            return ckpt_path
        dirs = [self.output_dir / "checkpoints"]  # where CheckpointOnSigterm writes
        dirs += [Path(cb.dirpath) for cb in self.trainer.checkpoint_callbacks if cb.dirpath]  # type: ignore[attr-defined]
        newest = newest_checkpoint(dirs)
        if newest is None:
            log.warning(
                "ckpt_path=last: no checkpoint in %s; training starts from the beginning. A "
                "job started again must run in the same directory (fix hydra.run.dir) to resume.",
                ", ".join(str(d) for d in dict.fromkeys(dirs)),
            )
            return None
        log.info("ckpt_path=last: resuming from %s", newest)
        return str(newest)

    def export(
        self,
        final: bool = True,
        best: bool = True,
        model_name: str | None = None,
        push_to_hub: str | None = None,
        language: str | list[str] | None = "en",
        license: str | None = None,
        wandb_artifact: bool = False,
        merge_adapters: bool = False,
    ) -> dict[str, Path]:
        """Write `final/` (the weights at the end) and `best/` (the best monitored checkpoint)
        with model cards; prints the before/after table. Every rank must call it (under FSDP
        the weights are gathered); rank 0 writes.

        `language`, `license`: the card's (a Hub licence id such as apache-2.0).
        `wandb_artifact`: also log the exported folders to the W&B run as `model` artifacts.
        `merge_adapters`: with LoRA adapters, write merged full weights instead of the adapter
        layout (which names the base model)."""
        encoder = self.module.encoder
        description = EncoderDescription.of(encoder)
        whole = whole_copy(self.trainer, encoder, description.build)
        if whole is None or not self.trainer.is_global_zero:
            return {}
        out = export_models(
            self.trainer,
            self.module,
            self.data,
            self.evaluation,
            self.output_dir,
            whole,
            name=model_name or "st_lightning-model",
            base_model=self.base_model or description.backbone.get("_name_or_path"),
            hyperparameters=self.hyperparameters,
            final=final,
            best=best,
            push_to_hub=push_to_hub,
            language=language,
            license=license,
            merge_adapters=merge_adapters,
        )
        if wandb_artifact:
            log_model_artifacts(self.trainer, out, model_name or "st_lightning-model")
        if self.evaluation.evaluators:
            print(summary_table(self.evaluation))
        for kind, path in out.items():
            print(f"{kind} model: {path}")
        return out


def build(
    module: EmbeddingModule,
    data: EmbeddingDataModule,
    output_dir: str | Path,
    evaluators: Mapping[str, Evaluator | None] | Sequence[Evaluator] = (),
    evaluation: Mapping[str, Any] | None = None,
    monitors: Sequence[str] = (),
    callbacks: Sequence[Callback] = (),
    loggers: Sequence[Logger] = (),
    config: Mapping[str, Any] | None = None,
    base_model: str | None = None,
    **trainer_settings: Any,
) -> Run:
    """A `Run` of `module` on `data`, writing under `output_dir`.

    Args:
        evaluators: evaluated by one `EvaluatorCallback` (its CSV files in `output_dir/eval`).
        evaluation: the callback's schedule (`every_n_steps`, `on_epoch_end`, ...).
        monitors: metric keys that checkpointing or a sweep watch (checked when first logged).
        callbacks, loggers: Lightning's, added to the run's own.
        config: the composed run config, logged to the loggers and kept in checkpoints.
        base_model: the Hub id the model card names as the base model.
        trainer_settings: `lightning.Trainer` arguments (`max_epochs`, `devices`, `strategy`,
            `precision="auto"` for bf16 where the hardware is fast at it, ...).
    """
    bound_kernel_cache()
    quiet_third_party()
    # The data module restores its sampler's epoch and position itself (mid-epoch resume is
    # exact); Lightning cannot see that and would warn on every resume.
    warnings.filterwarnings(
        "ignore", message="You're resuming from a checkpoint that ended before the epoch ended"
    )
    output_dir = Path(output_dir)
    settings = trainer_arguments(trainer_settings, output_dir)
    evaluation_cb = EvaluatorCallback(
        evaluators,
        csv_dir=str(output_dir / "eval"),
        monitors=[m for m in monitors if m.startswith("val/")],
        **dict(evaluation or {}),
    )
    all_callbacks = [
        evaluation_cb,
        *callbacks,
        CheckpointOnSigterm(output_dir / "checkpoints"),
        CarryStepLog(),
        RunRecord(),
    ]
    wants_bar = settings.get("enable_progress_bar", True) is not False
    if wants_bar and not any(isinstance(cb, ProgressBarBase) for cb in callbacks):
        all_callbacks.append(ProgressBar())
    if not loggers:  # Lightning's LearningRateMonitor refuses to run without a logger
        all_callbacks = [cb for cb in all_callbacks if not isinstance(cb, LearningRateMonitor)]
    # The guide model of GISTEmbedLoss reads the batch texts.
    if any(getattr(loss, "needs_guide", False) for loss in module_losses(module)):
        data.with_texts = True
    trainer = L.Trainer(callbacks=all_callbacks, logger=list(loggers) or False, **settings)
    if config is not None:
        module.run_config = dict(config)  # type: ignore[assignment]
        for logger in trainer.loggers:
            logger.log_hyperparams(dict(config))
    return Run(
        trainer,
        module,
        data,
        evaluation_cb,
        output_dir,
        base_model=base_model,
        hyperparameters=hyperparameters(module, data, trainer, config),
    )


def trainer_arguments(settings: Mapping[str, Any], output_dir: Path) -> dict[str, Any]:
    """`settings` with st_lightning's required and default Trainer settings; a setting that
    contradicts a required one, or a checkpoint writer of its own, is refused."""
    out = {**DEFAULT_TRAINER, **settings}
    out.setdefault("default_root_dir", str(output_dir))
    for key, value in REQUIRED_TRAINER.items():
        if key in settings and settings[key] != value:
            raise ValueError(
                f"trainer {key}={settings[key]!r} is not supported: st_lightning needs "
                f"{key}={value!r} (its samplers shard batches by rank and may change an "
                f"epoch's length). Remove the setting."
            )
        out[key] = value
    check_strategy(out.get("strategy"))
    plugins = list(out.get("plugins") or [])
    if any(isinstance(p, CheckpointIO) for p in plugins):
        raise ValueError(
            "st_lightning writes checkpoints with its own AtomicCheckpointIO (a crash while "
            "saving never damages the previous checkpoint); remove the CheckpointIO plugin."
        )
    out["plugins"] = [*plugins, AtomicCheckpointIO()]
    if out.get("precision") == "auto":
        out["precision"] = auto_precision(out.get("accelerator"))
        log.info("precision=auto: training with %s on this machine", out["precision"])
    return out


def module_losses(module: EmbeddingModule) -> list[Any]:
    return [module.shared_loss] if module.shared_loss is not None else list(module.losses.values())


def hyperparameters(
    module: EmbeddingModule,
    data: EmbeddingDataModule,
    trainer: L.Trainer,
    config: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The training settings the model card lists, read from the built objects."""

    def name(factory: Any) -> str:
        target = getattr(factory, "func", factory)
        return f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', target)}"

    return {
        **dict(module.hparams),
        "batch_size": data.batch_size,
        "max_epochs": trainer.max_epochs,
        "max_steps": trainer.max_steps,
        "precision": str(trainer.precision),
        "seed": (config or {}).get("seed", data.seed),
        "multi_dataset_sampler": name(data.multi_dataset_sampler),
        "batch_sampler": name(data.batch_sampler),
    }
