"""What a run prints: third-party noise kept off the console, one line about the run, a short
progress bar.

A console that shows banners, advertisements and other libraries' deprecation notices on every
run teaches people to skip warnings; the ones about the user's own input then go unread. So
`quiet_third_party()` removes, by exact message, the lines that are never about the user's
run, and everything else (Lightning's warnings about settings, ours) still shows.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

from st_lightning.utils.record import devices

# Informational lines Lightning logs on every run. The devices and precision are in the run
# line instead; the rest advertises, or describes Lightning's own bookkeeping.
_LIGHTNING_INFO = re.compile(
    r"^(GPU available: |TPU available: |HPU available: |💡 Tip: |Seed set to |"
    r"Loading `train_dataloader` to estimate|LOCAL_RANK: \d+ - CUDA_VISIBLE_DEVICES|"
    r"Using (16bit|bfloat16) Automatic Mixed Precision)"
)
# Deprecation notices raised inside third-party code that a user cannot act on; each is
# matched by its exact message.
_THIRD_PARTY_WARNINGS = [
    # Lightning's pytree helper on torch >= 2.10 (lightning/pytorch/utilities/_pytree.py).
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # peft 0.21 asks transformers >= 5.23 for the attribute's former name when it wraps a model.
    r"`is_gradient_checkpointing` is deprecated",
]
_LIGHTNING_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.fabric.utilities.seed",
)


class _DropLightningInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno <= logging.INFO and _LIGHTNING_INFO.match(str(record.getMessage()))
        )


_FILTER = _DropLightningInfo()


def quiet_third_party() -> None:
    """Drop the third-party lines listed above (idempotent). Called by `build`, so the command
    line, Python runs and notebooks all get it."""
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    for message in _THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def run_line(trainer: L.Trainer, module: L.LightningModule) -> str:
    """One line about the run: model, parameters, precision, devices, strategy."""
    params = list(module.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    from st_lightning.encoders.adapters import base_model, is_adapted

    encoder = getattr(module, "encoder", None)
    transformer = getattr(encoder, "transformer", module)
    backbone = type(base_model(transformer)).__name__
    backbone += " + LoRA" if is_adapted(transformer) else ""
    count, kind = devices(trainer)
    strategy = type(trainer.strategy).__name__.removesuffix("Strategy")
    return (
        f"Training {backbone}: {_count(total)} parameters ({_count(trainable)} trainable), "
        f"precision {trainer.precision}, {count} {kind.lower()} device"
        f"{'s' if count > 1 else ''}, strategy {strategy}"
    )


# The progress bar's short names for the metrics it shows.
_BAR_NAMES = {
    "train/loss": "loss",
    "train/samples_per_sec": "samples/s",
}


class ProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar (steps, elapsed and remaining time) showing the loss and samples/s
    under short names, without the logger version number."""

    @property
    def total_train_batches(self) -> int | float:
        # Streamed data has no epoch length; the run's length is then max_steps.
        total = super().total_train_batches
        max_steps = self.trainer.max_steps
        if total == float("inf") and max_steps is not None and max_steps > 0:
            return max_steps
        return total

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        shown: dict[str, Any] = {}
        for key, value in metrics.items():
            name = _BAR_NAMES.get(key, key)
            if name == "samples/s" and isinstance(value, float | int):
                value = f"{value:.0f}"
            shown[name] = value
        return shown
