"""Checkpoints written atomically (a crash while saving never damages the previous one), and
one written when SIGTERM stops a run."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.utilities.cloud_io import _atomic_save
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes `<name>.tmp-<pid>` next to the target, flushes it to disk, then renames it into
    place, so the checkpoint at a path is always complete: the old one or the new one."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        try:
            _atomic_save(checkpoint, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()


class CheckpointOnSigterm(L.Callback):
    """Saves a resumable checkpoint when the run is stopped by SIGTERM.

    SLURM (before preemption or at the time limit), Kubernetes and most schedulers send SIGTERM
    before killing a job. Lightning finishes the current batch and stops with
    `SIGTERMException`; this callback then writes `<dirpath>/last.ckpt` (optimizer, scheduler,
    sampler position and RNG state included), so `ckpt_path=<dirpath>/last.ckpt` continues as if
    never stopped. Every rank calls it; rank 0 writes.
    """

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)
        self.saved: Path | None = None

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path)
        self.saved = path
        log.warning(
            "Stopped by SIGTERM after step %d; saved %s. Resume with ckpt_path=%s",
            trainer.global_step,
            path,
            path,
        )
