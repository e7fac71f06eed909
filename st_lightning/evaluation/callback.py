"""EvaluatorCallback: run evaluators inside Lightning, sharded over ranks, and log the metrics."""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from st_lightning.evaluation.base import Evaluator, embed_groups, encoder_fn
from st_lightning.evaluation.loss import evaluation_loss
from st_lightning.evaluation.sharding import sharded_encoder
from st_lightning.utils.fsdp import full_parameters

log = logging.getLogger(__name__)


class EvaluatorCallback(L.Callback):
    """Runs evaluators before training (baseline), every `every_n_steps` and/or at each epoch
    end, and after training, logging `val/<name>/<metric>` to every logger and to
    `trainer.callback_metrics`, so ModelCheckpoint, EarlyStopping and sweeps can monitor them.
    When the data module has eval datasets, their loss is computed at the same times and
    logged as `val/loss` and `val/loss/<dataset>`.

    Under DDP/FSDP each rank embeds a shard of the texts and the embeddings are gathered, so all
    ranks compute the same metrics and nothing is embedded twice.

    Args:
        evaluators: name -> evaluator (a None value switches one off), or a list.
        every_n_steps: also evaluate every this many optimizer steps.
        on_epoch_end, before_training, after_training: when else to evaluate.
        csv_dir: write `<csv_dir>/<name>.csv` with one row per evaluation (rank 0).
        monitors: metric keys that checkpointing, early stopping or a sweep watch; the first
            evaluation fails with the list of real keys if one of them is not produced.
    """

    def __init__(
        self,
        evaluators: Mapping[str, Evaluator | None] | Sequence[Evaluator],
        every_n_steps: int | None = None,
        on_epoch_end: bool = True,
        before_training: bool = True,
        after_training: bool = True,
        csv_dir: str | None = None,
        monitors: Sequence[str] = (),
    ) -> None:
        items = evaluators.values() if isinstance(evaluators, Mapping) else evaluators
        self.evaluators = [e for e in items if e is not None]
        names = [e.name for e in self.evaluators]
        if len(set(names)) != len(names):
            raise ValueError(f"Evaluator names must be distinct, got {names}.")
        self.every_n_steps = every_n_steps
        self.on_epoch_end = on_epoch_end
        self.before_training = before_training
        self.after_training = after_training
        self.csv_dir = Path(csv_dir) if csv_dir else None
        self.history: list[dict[str, Any]] = []
        self.monitors = list(monitors)

    # ---- running ---------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(
        self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str
    ) -> dict[str, float]:
        encoder = getattr(pl_module, "encoder", pl_module)
        was_training = encoder.training
        encoder.eval()
        results: dict[str, float] = {}
        try:
            # The trainer's precision (e.g. bf16 autocast) applies to evaluation too; under FSDP
            # every rank gathers the whole encoder first, then embeds its shard of the texts.
            with full_parameters(trainer), trainer.precision_plugin.forward_context():
                for evaluator in self.evaluators:
                    results.update(self.run_one(trainer, pl_module, encoder, evaluator, stage))
                results.update(self.run_loss(trainer, pl_module, stage))
        finally:
            encoder.train(was_training)
        return results

    def run_one(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        encoder: Any,
        evaluator: Evaluator,
        stage: str,
    ) -> dict[str, float]:
        start = time.perf_counter()
        encode = sharded_encoder(
            encoder_fn(encoder, evaluator.batch_size),
            trainer.global_rank,
            trainer.world_size,
            all_gather=trainer.strategy.all_gather,
            device=pl_module.device,
        )
        embeddings = embed_groups(
            evaluator.inputs(), encode, evaluator.batch_size, evaluator.truncate_dim
        )
        metrics = evaluator.compute(embeddings)
        self.record(trainer, evaluator.name, stage, metrics, time.perf_counter() - start)
        return {f"val/{evaluator.name}/{k}": float(v) for k, v in metrics.items()}

    def run_loss(
        self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str
    ) -> dict[str, float]:
        """The loss on the data module's eval datasets, if it has any (`val/loss...`)."""
        data = getattr(trainer, "datamodule", None)
        if not getattr(data, "eval_specs", None):
            return {}
        start = time.perf_counter()
        results = evaluation_loss(
            pl_module,
            data,
            trainer.global_rank,
            trainer.world_size,
            lambda t: trainer.strategy.reduce(t, reduce_op="sum"),
        )
        metrics = {k.removeprefix("val/loss").lstrip("/") or "all": v for k, v in results.items()}
        self.record(trainer, "loss", stage, metrics, time.perf_counter() - start)
        return results

    def record(
        self, trainer: L.Trainer, name: str, stage: str, metrics: dict[str, float], seconds: float
    ) -> None:
        row = {
            "stage": stage,
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "seconds": round(seconds, 3),
        }
        self.history.append({**row, "evaluator": name, "metrics": dict(metrics)})
        shown = ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
        )
        log.info("%s %s at step %d: %s", name, stage, trainer.global_step, shown)
        if self.csv_dir is None or trainer.global_rank != 0:
            return
        self.csv_dir.mkdir(parents=True, exist_ok=True)
        path = self.csv_dir / f"{name}.csv"
        fields = [*row, *metrics]
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            if new:
                writer.writeheader()
            writer.writerow({**row, **metrics})

    def check_monitors(self, results: dict[str, float]) -> None:
        missing = [m for m in self.monitors if m not in results]
        if missing:
            raise ValueError(
                f"Monitored metric(s) {missing} are not produced by the evaluators; they log "
                f"{sorted(results)}."
            )
        self.monitors = []  # checked once

    def publish(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        results: dict[str, float],
        hook_logs: bool,
    ) -> None:
        self.check_monitors(results)
        if hook_logs:  # inside training hooks: Lightning's own logging (all loggers, monitors)
            for key, value in results.items():
                pl_module.log(key, value, on_step=False, on_epoch=True, sync_dist=False)
        else:  # before/after fit, where self.log is not allowed
            for logger in trainer.loggers:
                logger.log_metrics(results, step=trainer.global_step)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in results.items()})

    # ---- hooks -------------------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.before_training and not trainer.sanity_checking:
            self.publish(trainer, pl_module, self.evaluate(trainer, pl_module, "before"), False)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        step = trainer.global_step
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0:
            if getattr(self, "_last_step", None) != step:  # once per optimizer step
                self._last_step = step
                self.publish(trainer, pl_module, self.evaluate(trainer, pl_module, "step"), True)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.on_epoch_end:
            self.publish(trainer, pl_module, self.evaluate(trainer, pl_module, "epoch"), True)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.after_training:
            self.publish(trainer, pl_module, self.evaluate(trainer, pl_module, "after"), False)

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """evaluator -> {"before": metrics, "after": metrics} from the history."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for entry in self.history:
            out.setdefault(entry["evaluator"], {})[entry["stage"]] = entry["metrics"]
        return out
