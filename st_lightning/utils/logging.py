"""Logger factories and a throughput monitor."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Literal

import lightning as L


def wandb_logger(
    project: str | None = None,
    name: str | None = None,
    group: str | None = None,
    tags: list[str] | None = None,
    notes: str | None = None,
    entity: str | None = None,
    job_type: str | None = None,
    save_dir: str = ".",
    version: str | None = None,
    offline: bool | None = None,
    log_model: bool | Literal["all"] = False,
    prefix: str = "",
) -> Any:
    """A WandbLogger that runs offline unless an API key or an explicit mode says otherwise.

    The arguments are WandbLogger's (and `wandb.init`'s `group`, `tags`, `notes`, `entity`,
    `job_type`). The key itself is read by wandb from the environment; it never enters configs
    or logs.
    """
    from lightning.pytorch.loggers import WandbLogger

    if offline is None:
        offline = "WANDB_MODE" not in os.environ and not os.environ.get("WANDB_API_KEY")
    extra: dict[str, Any] = {
        "group": group,
        "tags": tags,
        "notes": notes,
        "entity": entity,
        "job_type": job_type,
    }
    return WandbLogger(
        project=project,
        name=name,
        save_dir=save_dir,
        version=version,
        offline=offline,
        log_model=log_model,
        prefix=prefix,
        **{k: v for k, v in extra.items() if v is not None},
    )


def log_model_artifacts(trainer: L.Trainer, folders: dict[str, Path], name: str) -> list[Any]:
    """Log each exported folder (`final`, `best`) to the run's W&B logger as a `model`
    artifact named `<name>-<kind>`, with the card's metrics as metadata. Refused with a clear
    error when the run has no W&B logger."""
    from lightning.pytorch.loggers import WandbLogger

    loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
    if not loggers:
        raise ValueError(
            "export.wandb_artifact=true needs the W&B logger: add logger=wandb (or set "
            "export.wandb_artifact=false)."
        )
    import wandb

    run = loggers[0].experiment
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    artifacts = []
    for kind, folder in folders.items():
        safe = re.sub(r"[^A-Za-z0-9._-]", "-", f"{name}-{kind}")
        artifact = wandb.Artifact(safe, type="model", metadata={"folder": kind, **metrics})
        artifact.add_dir(str(folder))
        run.log_artifact(artifact, aliases=["latest", kind])
        artifacts.append(artifact)
    return artifacts


class ThroughputMonitor(L.Callback):
    """Logs samples/s, real (non-padding) tokens/s and the padding fraction of each step."""

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        seconds = time.perf_counter() - getattr(self, "_start", time.perf_counter())
        features = getattr(batch, "features", None)
        if not features or seconds <= 0:
            return
        embedder = getattr(pl_module, "embedder", None)
        # Row lengths the batch carries on the host: no wait for the device here.
        lengths = getattr(batch, "lengths", None)
        if embedder is not None:  # what the step computes, with its length grouping
            real, padded = embedder.token_counts(features, lengths)
        else:
            real = sum(int(f["attention_mask"].sum()) for f in features)
            padded = sum(f["attention_mask"].numel() for f in features)
        size = batch.size
        pl_module.log("train/samples_per_sec", size / seconds, batch_size=size, prog_bar=True)
        pl_module.log("train/tokens_per_sec", real / seconds, batch_size=size)
        pl_module.log("train/padding_fraction", 1.0 - real / max(padded, 1), batch_size=size)


class CarbonTracker(L.Callback):
    """Tracks the run's energy use and emissions with CodeCarbon when it is installed (and does
    nothing otherwise); the estimate is logged as `train/emissions_kg` at the end."""

    def __init__(self, output_dir: str | None = None) -> None:
        self.output_dir = output_dir
        self.tracker: Any = None
        # The Hub's co2_eq_emissions fields (emissions in grams), for the model card.
        self.emissions: dict[str, Any] | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        try:
            from codecarbon import OfflineEmissionsTracker
        except ImportError:
            return
        if trainer.is_global_zero:
            self.tracker = OfflineEmissionsTracker(
                output_dir=self.output_dir or ".", log_level="error", country_iso_code="USA"
            )
            self.tracker.start()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.tracker is None:
            return
        emissions = float(self.tracker.stop() or 0.0)
        data = getattr(self.tracker, "final_emissions_data", None)
        self.emissions = {
            "emissions": emissions * 1000,
            "energy_consumed": float(getattr(data, "energy_consumed", 0.0) or 0.0),
            "source": "codecarbon",
            "training_type": "fine-tuning",
            "on_cloud": False,
            "cpu_model": getattr(data, "cpu_model", None),
            "ram_total_size": getattr(data, "ram_total_size", None),
            "hours_used": round(float(getattr(data, "duration", 0.0) or 0.0) / 3600, 3),
            "hardware_used": getattr(data, "gpu_model", None) or getattr(data, "cpu_model", None),
        }
        for logger in trainer.loggers:
            logger.log_metrics({"train/emissions_kg": emissions}, step=trainer.global_step)
