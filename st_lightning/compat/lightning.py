"""Lightning internals used by st_lightning, each checked here at import.

- `Trainer._signal_connector.received_sigterm`: the flag Lightning's loops check to stop with
  `SIGTERMException` (set by `CheckpointOnSigterm` once all ranks agree on a SIGTERM).
- `Trainer._logger_connector` (`_first_loop_iter`, `should_update_logs`, `metrics`),
  `_FitLoop._should_accumulate`, `_TrainingEpochLoop._batches_that_stepped`: the log row of the
  step a checkpoint ends with (`CarryStepLog`).
- `cloud_io._atomic_save`: writes a checkpoint to a file (`AtomicCheckpointIO` renames it).
- `ModelParallelStrategy._data_parallel_size` / `_tensor_parallel_size`: the mesh sizes
  `FullyShardedStrategy` sets from the trainer's devices and nodes.
- `LightningModule._trainer`: the trainer, or None outside one (`trainer` raises then).
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.fabric.utilities import cloud_io
from lightning.pytorch.loops.fit_loop import _FitLoop
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
from lightning.pytorch.strategies import ModelParallelStrategy
from lightning.pytorch.trainer.connectors.logger_connector.logger_connector import (
    _LoggerConnector,
)
from lightning.pytorch.trainer.connectors.signal_connector import _SignalConnector

from st_lightning.compat import IncompatibleVersion, require

_V = L.__version__
require("lightning", _V, L.Trainer, ["_signal_connector", "_logger_connector"])
require("lightning", _V, _SignalConnector, ["received_sigterm"])
require("lightning", _V, _LoggerConnector, ["_first_loop_iter", "should_update_logs", "metrics"])
require("lightning", _V, _FitLoop, ["_should_accumulate"])
require("lightning", _V, _TrainingEpochLoop, ["_batches_that_stepped"])
require("lightning", _V, ModelParallelStrategy, ["_data_parallel_size", "_tensor_parallel_size"])
require("lightning", _V, L.LightningModule, ["_trainer"])
if not callable(getattr(cloud_io, "_atomic_save", None)):
    raise IncompatibleVersion(
        f"lightning {_V} has no lightning.fabric.utilities.cloud_io._atomic_save, which "
        "st_lightning's checkpoint writer uses; install a tested version (constraints.txt)."
    )

atomic_save = cloud_io._atomic_save


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """The trainer `module` is attached to, or None (where `module.trainer` would raise)."""
    return module._trainer


def request_stop_as_sigterm(trainer: L.Trainer) -> None:
    """Make Lightning stop after this batch as if SIGTERM had arrived (it raises
    `SIGTERMException` from its loop, which `CheckpointOnSigterm.on_exception` handles)."""
    trainer._signal_connector.received_sigterm = True


def pending_log_row(trainer: L.Trainer) -> tuple[int, dict[str, Any]] | None:
    """(step, metrics) that Lightning is about to hand its loggers for the current training
    step, or None when this step logs nothing (gradient accumulation, `log_every_n_steps`)
    or no step is running."""
    if trainer.fit_loop._should_accumulate():
        return None
    connector = trainer._logger_connector
    if connector._first_loop_iter is None or not connector.should_update_logs:
        return None
    return trainer.fit_loop.epoch_loop._batches_that_stepped, connector.metrics["log"]


def set_mesh_sizes(
    strategy: ModelParallelStrategy, data_parallel: int, tensor_parallel: int
) -> None:
    strategy._data_parallel_size = data_parallel
    strategy._tensor_parallel_size = tensor_parallel
