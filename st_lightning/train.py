"""Train from a Hydra config: python -m st_lightning.train +experiment=nli_triplet [overrides]."""

from __future__ import annotations

import logging
import signal
import warnings
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from st_lightning.evaluation.callback import EvaluatorCallback
from st_lightning.export import read_checkpoint
from st_lightning.export_run import export_models, summary_table
from st_lightning.utils.checkpoint import (
    AtomicCheckpointIO,
    CarryStepLog,
    CheckpointOnSigterm,
    newest_checkpoint,
)
from st_lightning.utils.fsdp import check_strategy, whole_copy
from st_lightning.utils.instantiate import instantiate_named
from st_lightning.utils.memory import bound_kernel_cache
from st_lightning.utils.precision import auto_precision

log = logging.getLogger(__name__)


# Numeric settings checked before anything loads: a typo such as data.batch_size=6a fails
# here, naming its key, not as a comparison error inside a constructor.
_NONE = type(None)
NUMBERS: dict[str, tuple[type, ...]] = {
    "seed": (int,),
    "data.batch_size": (int,),
    "model.lr": (int, float),
    "model.weight_decay": (int, float),
    "model.warmup_ratio": (int, float),
    "model.warmup_steps": (int,),
    "model.mini_batch_size": (int, _NONE),
    "trainer.max_steps": (int,),
    "trainer.max_epochs": (int, _NONE),
    "trainer.accumulate_grad_batches": (int,),
    "trainer.gradient_clip_val": (int, float, _NONE),
    "trainer.num_nodes": (int,),
}
_ABSENT = object()


def check_config(cfg: DictConfig) -> None:
    """Cheap checks before anything is loaded: numeric settings are numbers, and what the
    monitors watch exists."""
    for key, types in NUMBERS.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is _ABSENT:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            wanted = "an integer" if types[0] is int and float not in types else "a number"
            wanted += " or null" if _NONE in types else ""
            raise ValueError(
                f"{key} must be {wanted}, got {value!r} ({type(value).__name__}); "
                "fix the command-line override or the config file."
            )
    check_strategy(OmegaConf.select(cfg, "trainer.strategy"))
    evaluators = [k for k, v in (cfg.get("evaluator") or {}).items() if v is not None]
    for key in _monitors(cfg):
        parts = str(key).split("/")
        if parts[0] == "train":
            continue
        if len(parts) < 3 or parts[0] != "val" or parts[1] not in evaluators:
            raise ValueError(
                f"The monitored metric {key!r} comes from no configured evaluator; metrics are "
                f"val/<evaluator>/<metric> and the evaluators are {evaluators}."
            )


def train(cfg: DictConfig) -> dict[str, float]:
    """Seed, build everything from `cfg`, fit, export; returns the final logged metrics."""
    bound_kernel_cache()
    # Lightning cannot see that the data module restores the sampler's epoch and position
    # itself (resuming mid-epoch is exact, tests/test_faults.py), and would warn otherwise.
    warnings.filterwarnings(
        "ignore", message="You're resuming from a checkpoint that ended before the epoch ended"
    )
    check_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resume_path(cfg, output_dir)
    if ckpt_path is not None:
        read_checkpoint(ckpt_path)  # a missing or damaged file fails here, before loading
    output_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    L.seed_everything(cfg.seed, workers=True)

    encoder = instantiate(cfg.model.encoder)
    losses = instantiate_named(cfg.losses)
    model_cfg = OmegaConf.masked_copy(cfg.model, [k for k in cfg.model if k != "encoder"])
    model = instantiate(model_cfg, encoder=encoder, losses=losses, _convert_="all")
    model.run_config = resolved
    data = instantiate(cfg.data, tokenizer=encoder.tokenizer, max_seq_length=encoder.max_seq_length)

    evaluators = instantiate_named(cfg.get("evaluator"))
    eval_callback = EvaluatorCallback(
        evaluators,
        csv_dir=str(output_dir / "eval"),
        monitors=[m for m in _monitors(cfg) if m.startswith("val/")],
        **cfg.evaluation,
    )
    callbacks = [
        eval_callback,
        *instantiate_named(cfg.get("callbacks")).values(),
        CheckpointOnSigterm(output_dir / "checkpoints"),
        CarryStepLog(),
    ]
    loggers = list(instantiate_named(cfg.get("logger")).values())
    if not loggers:  # Lightning's LearningRateMonitor refuses to run without a logger
        callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
    precision = cfg.trainer.get("precision")
    if precision == "auto":
        precision = auto_precision(cfg.trainer.get("accelerator"))
        log.info("precision=auto: training with %s on this machine", precision)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
        precision=precision,
    )
    for logger in trainer.loggers:
        logger.log_hyperparams(resolved)  # type: ignore[arg-type]

    try:
        # weights_only: resuming never runs pickled code from a checkpoint file.
        trainer.fit(model, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        # CheckpointOnSigterm has saved the run; exit as a process ended by SIGTERM does.
        raise SystemExit(128 + signal.SIGTERM) from None
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    # Under FSDP every rank takes part in gathering the weights; rank 0 writes the folders.
    whole = whole_copy(trainer, model.encoder, lambda: instantiate(cfg.model.encoder))
    if trainer.is_global_zero:
        export_models(cfg, trainer, model, data, eval_callback, output_dir, whole)
        print(summary_table(eval_callback))
    return metrics


def resume_path(cfg: DictConfig, output_dir: Path) -> str | None:
    """The checkpoint to resume from: `ckpt_path` as given, or for `ckpt_path=last` the newest
    checkpoint this run's directory holds, so a requeued job runs the same command every time
    (the first time, with no checkpoint yet, it starts from the beginning)."""
    value = cfg.get("ckpt_path")
    if value != "last":
        return value
    dirs = [output_dir / "checkpoints"]  # where CheckpointOnSigterm writes
    for cb in (cfg.get("callbacks") or {}).values():
        if cb is not None and cb.get("dirpath"):
            dirs.append(Path(cb.dirpath))
    newest = newest_checkpoint(dirs)
    if newest is None:
        log.warning(
            "ckpt_path=last: no checkpoint in %s; training starts from the beginning. A job "
            "started again must run in the same directory (fix hydra.run.dir) to resume.",
            ", ".join(str(d) for d in dict.fromkeys(dirs)),
        )
        return None
    log.info("ckpt_path=last: resuming from %s", newest)
    return str(newest)


def _monitors(cfg: DictConfig) -> list[str]:
    """Metric keys that the sweep (optimized_metric) and the callbacks (monitor) watch."""
    found = [cfg.get("optimized_metric")]
    found += [cb.get("monitor") for cb in (cfg.get("callbacks") or {}).values() if cb is not None]
    return [str(m) for m in found if m]


def metric_value(metrics: dict[str, float], name: str | None) -> float | None:
    if name is None:
        return None
    if name not in metrics:
        raise KeyError(f"optimized_metric {name!r} was not logged; logged: {sorted(metrics)}.")
    return metrics[name]


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    try:
        value = metric_value(train(cfg), cfg.get("optimized_metric"))
        if value is not None:
            log.info("optimized_metric %s = %.6f", cfg.optimized_metric, value)
        return value
    finally:
        try:
            import wandb

            if wandb.run is not None:
                wandb.finish()
        except ImportError:
            pass


if __name__ == "__main__":
    torch.set_float32_matmul_precision("high")
    main()
