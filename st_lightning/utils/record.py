"""What the model card and the dashboards report about a run besides its metrics: the training
loss by logged step, the time spent, the hardware, and the estimated time left."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch


class RunRecord(L.Callback):
    """Records the mean training loss over each `log_every_n_steps` window (epoch, step, loss)
    and the seconds spent training, and logs `train/eta_seconds` (the remaining optimizer steps
    times the recent seconds per step). Its record is kept in checkpoints, so a resumed run's
    card has the whole log."""

    def __init__(self, smoothing: float = 0.1) -> None:
        self.rows: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        self.smoothing = smoothing
        self._start: float | None = None
        self._window: list[torch.Tensor] = []
        self._epoch = 0.0
        self._step_time: float | None = None  # seconds per optimizer step, smoothed
        self._last: tuple[int, float] | None = None  # (global step, time) at the last step

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()
        self._last = (trainer.global_step, self._start)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.train_seconds = self.seconds()
        self._start = None
        last = self.rows[-1]["step"] if self.rows else 0
        if self._window and trainer.global_step > last:  # the last, partial window
            self.rows.append(self._row(self._epoch, trainer.global_step))
            self._window = []

    def _row(self, epoch: float, step: int) -> dict[str, Any]:
        loss = float(torch.stack(self._window).float().mean())
        return {"epoch": round(epoch, 4), "step": step, "training loss": round(loss, 4)}

    def seconds(self) -> float:
        running = time.perf_counter() - self._start if self._start is not None else 0.0
        return self.train_seconds + running

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:  # kept on the device: read once per logged row, not every step
            self._window.append(loss.detach())
        batches = max(trainer.num_training_batches, 1)
        self._epoch = min(
            trainer.current_epoch + (batch_idx + 1) / batches, trainer.current_epoch + 1
        )
        step = trainer.global_step
        now = time.perf_counter()
        if self._last is not None and step > self._last[0]:
            per_step = (now - self._last[1]) / (step - self._last[0])
            a = self.smoothing
            self._step_time = (
                per_step if self._step_time is None else a * per_step + (1 - a) * self._step_time
            )
            self._last = (step, now)
            total = trainer.estimated_stepping_batches
            if self._step_time is not None and total != float("inf"):
                eta = max(int(total) - step, 0) * self._step_time
                pl_module.log("train/eta_seconds", eta, batch_size=1)
            every = max(int(getattr(trainer, "log_every_n_steps", 50)), 1)
            if step % every == 0 and self._window:
                self.rows.append(self._row(self._epoch, step))
                self._window = []

    def state_dict(self) -> dict[str, Any]:
        return {"rows": list(self.rows), "train_seconds": self.seconds()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))
        self.train_seconds = float(state_dict.get("train_seconds", 0.0))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def devices(trainer: L.Trainer) -> tuple[int, str]:
    """How many devices the run trains on, in all nodes, and their kind ("CPU", "CUDA", ...)."""
    kind = type(trainer.accelerator).__name__.removesuffix("Accelerator")
    return trainer.num_devices * trainer.num_nodes, kind


def hardware(trainer: L.Trainer) -> dict[str, str]:
    """The machine the run trained on, for the model card."""
    count, kind = devices(trainer)
    nodes = f"{trainer.num_nodes} node{'s' if trainer.num_nodes > 1 else ''}"
    out = {
        "Devices": f"{count} {kind} ({nodes})",
        "Precision": str(trainer.precision),
        "CPU": f"{cpu_name()} ({os.cpu_count()} logical cores)",
    }
    device = getattr(trainer.strategy, "root_device", None)
    if device is not None and device.type == "cuda":
        out["GPU"] = torch.cuda.get_device_name(device)
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        out["RAM"] = f"{pages / 2**30:.1f} GB"
    except (ValueError, OSError, AttributeError):
        pass
    return out
