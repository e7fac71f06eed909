"""Checkpoints written atomically (a crash while saving never damages the previous one), one
written when SIGTERM stops a run, the step's log row carried in a checkpoint, and
`ckpt_path=last` for jobs that are started again."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.fabric.utilities.apply_func import convert_tensors_to_scalars
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from st_lightning.compat.lightning import atomic_save, pending_log_row, request_stop_as_sigterm

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
            atomic_save(checkpoint, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()


class CheckpointOnSigterm(L.Callback):
    """Stops the run cleanly on SIGTERM and saves a resumable checkpoint.

    SLURM (before preemption or at the time limit), Kubernetes and most schedulers send SIGTERM
    before killing a job. The handler installed here only notes the signal (a signal handler
    interrupts the main thread anywhere, so it must not log, save or run collectives). At the
    end of every training batch the ranks agree on it (an all-reduce of one number): when any
    rank was signalled, every rank sets Lightning's stop flag at the same batch, Lightning
    stops with `SIGTERMException`, and every rank joins in writing `<dirpath>/last.ckpt`
    (optimizer, scheduler, sampler position and RNG state included; rank 0 writes), so
    `ckpt_path=last` continues as if never stopped. Lightning's own SIGTERM handler is
    replaced for the training loop: it broadcasts from inside the handler and checks each
    rank's own flag, which left 2-process runs hanging until the launcher killed them.
    """

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)
        self.signalled = False
        # Set by `EmbeddingModule` in each training step, where the ranks' agreement on the
        # signal shares one collective with the loss check; None when a step did not agree.
        self.agreed: bool | None = None

    def note(self, signum: int, frame: FrameType | None) -> None:
        self.signalled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning registered its handler before this hook and restores the one from before
        # `fit` when it tears down.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.note)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        agreed, self.agreed = self.agreed, None
        stop = self.signalled if agreed is None else agreed
        if agreed is None and trainer.world_size > 1 and dist.is_initialized():
            flag = torch.tensor([float(stop)], device=trainer.strategy.root_device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        if stop:
            request_stop_as_sigterm(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path)
        where = "" if self.signalled else " on another rank"
        log.warning(
            "Stopped by SIGTERM%s after step %d; saved %s. Resume with ckpt_path=%s, or "
            "ckpt_path=last in the same run directory.",
            where,
            trainer.global_step,
            path,
            path,
        )


class CarryStepLog(L.Callback):
    """Keeps the metrics of the step a checkpoint ends with in that checkpoint, and logs them
    first when a run resumes from it.

    Lightning saves a step's checkpoint (in `on_train_batch_end`) before it hands that step's
    `self.log` values to the loggers, so a `kill -9` between the two leaves a checkpoint whose
    last step has no log row, and a run resumed from it never runs that step again. The row is
    the one Lightning is about to log (ranks already averaged); nothing is carried for a step
    that would log nothing (`log_every_n_steps`, gradient accumulation). When the kill came
    later, the resumed run writes the same values at the same step again.
    """

    def __init__(self) -> None:
        self.trainer: L.Trainer | None = None
        self.carried: dict[str, Any] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.trainer = trainer

    def pending_row(self) -> dict[str, Any] | None:
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return None
        pending = pending_log_row(trainer)
        if pending is None:
            return None
        step, metrics = pending
        if not metrics:
            return None
        return {
            "step": step,
            "metrics": {"epoch": trainer.current_epoch, **convert_tensors_to_scalars(metrics)},
        }

    def state_dict(self) -> dict[str, Any]:
        return {"row": self.pending_row()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.carried = state_dict.get("row")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row, self.carried = self.carried, None
        if row is None:
            return
        for logger in trainer.loggers:
            logger.log_metrics(row["metrics"], step=row["step"])
            logger.save()


def newest_checkpoint(dirs: list[Path]) -> Path | None:
    """The most recently written `*.ckpt` in `dirs` (None when there is none).

    `ckpt_path=last` resolves to it: after a `kill -9` that came between the first
    `step=N.ckpt` and the first `last.ckpt`, the step file is the newest state. Files are
    ordered by modification time, not by opening them: a checkpoint with optimizer state can
    be gigabytes. Unfinished `*.ckpt.tmp-<pid>` files of AtomicCheckpointIO are not candidates.
    """
    found = [p for d in dict.fromkeys(dirs) if d.is_dir() for p in d.glob("*.ckpt") if p.is_file()]
    if not found:
        return None
    return max(found, key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"))
