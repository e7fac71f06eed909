"""Stopping a run gracefully at a given step (tests, and time-boxed jobs)."""

from __future__ import annotations

from typing import Any

import lightning as L


class StopAtStep(L.Callback):
    """Ends training after `step` optimizer steps, as if interrupted: unlike a smaller
    `max_steps`, the learning-rate schedule still spans the whole run."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True
