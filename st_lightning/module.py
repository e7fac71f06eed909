"""EmbeddingModule: the encoder, one loss per dataset, the training step and the optimizer.

How a batch is embedded is the `BatchEmbedder`'s job (`st_lightning.encoders.batch`); whether
gradients are cached is the step variant's (`st_lightning.steps`); the optimizer and schedule
are built in `st_lightning.optim`. This file wires them into Lightning's hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor, nn

from st_lightning.compat.lightning import attached_trainer
from st_lightning.data.collate import Batch
from st_lightning.encoders import SentenceEncoder
from st_lightning.encoders.batch import BatchEmbedder
from st_lightning.encoders.description import EncoderDescription
from st_lightning.losses.base import EmbeddingLoss
from st_lightning.losses.gradcache import total_loss
from st_lightning.optim import Schedule, adamw_with_schedule, clip_gradients, parameter_groups
from st_lightning.steps import CachedStep, PlainStep
from st_lightning.utils.checkpoint import CheckpointOnSigterm
from st_lightning.utils.distributed import agree
from st_lightning.utils.fsdp import fully_sharded, mixed_precision_policy, shard_module
from st_lightning.utils.resume import architecture, check_resumable, restore_rng, rng_state

log = logging.getLogger(__name__)


class EmbeddingModule(L.LightningModule):
    """Trains a `SentenceEncoder` with a dict of losses keyed by dataset name.

    Args:
        encoder: the model being trained (saved at the end in sentence-transformers format).
        losses: dataset name -> loss (a single loss is used for every dataset).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay, except for biases and normalization weights (0, as
            in the reference trainer).
        lr_multipliers: parameter-name prefix -> learning-rate factor, e.g. `{"losses": 10.0}`
            for a freshly initialised SoftmaxLoss classifier, `{"encoder.transformer.embeddings":
            0.1}`; the longest matching prefix wins.
        warmup_ratio / warmup_steps: linear warmup over this share / number of optimizer steps
            (steps win when both are set).
        scheduler: "linear" decay to 0, "cosine" decay to 0, or "constant" after the warmup.
        adam_betas, adam_eps: AdamW settings.
        mini_batch_size: turn on gradient caching with this many rows per forward pass (any
            loss; memory is bounded by the mini-batch). Uses manual optimization, so gradient
            accumulation is set here instead of on the Trainer.
        gradient_clip_val: clip the total gradient norm to this before every optimizer step
            (1.0, the reference trainer's `max_grad_norm`; None switches it off), in both
            modes and every precision. A `trainer.gradient_clip_val` wins where it is set.
        accumulate_grad_batches: for the cached mode only.
        nan_policy: a non-finite loss "raise"s (naming the dataset and batch) or is "skip"ped
            (counted in `train/skipped_batches`).
        length_group_tokens: embed the rows of all columns of a batch sorted by length, in
            groups of at most this many token positions, each padded only to its own longest
            row, instead of padding each column to its longest (None: one forward per column;
            "auto": 512 on CPU, 16384 on accelerators). The loss and gradients are the same
            function of the data; far fewer padding tokens are computed.
    """

    def __init__(
        self,
        encoder: SentenceEncoder,
        losses: Mapping[str, EmbeddingLoss] | EmbeddingLoss,
        lr: float = 5e-5,
        weight_decay: float = 0.0,
        lr_multipliers: Mapping[str, float] | None = None,
        warmup_ratio: float = 0.0,
        warmup_steps: int = 0,
        scheduler: Schedule = "linear",
        adam_betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        mini_batch_size: int | None = None,
        gradient_clip_val: float | None = 1.0,
        accumulate_grad_batches: int = 1,
        nan_policy: Literal["raise", "skip"] = "raise",
        length_group_tokens: int | Literal["auto"] | None = "auto",
    ) -> None:
        super().__init__()
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}.")
        if not 0 <= warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}.")
        if scheduler not in ("linear", "cosine", "constant"):
            raise ValueError(f"scheduler must be linear, cosine or constant, got {scheduler!r}.")
        if nan_policy not in ("raise", "skip"):
            raise ValueError(f"nan_policy must be 'raise' or 'skip', got {nan_policy!r}.")
        if mini_batch_size is not None and mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {mini_batch_size}.")
        self.save_hyperparameters(ignore=["encoder", "losses"])
        self.encoder = encoder
        self.embedder = BatchEmbedder(encoder, length_group_tokens)
        self.shared_loss = losses if isinstance(losses, EmbeddingLoss) else None
        self.losses = nn.ModuleDict({} if self.shared_loss is not None else dict(losses))  # type: ignore[arg-type]
        self.lr = lr
        self.weight_decay = weight_decay
        self.gradient_clip_val = gradient_clip_val
        self.lr_multipliers = dict(lr_multipliers or {})
        self.warmup = (warmup_steps, warmup_ratio)
        self.scheduler_name = scheduler
        self.adam = ((float(adam_betas[0]), float(adam_betas[1])), adam_eps)
        self.nan_policy = nan_policy
        self.step: PlainStep | CachedStep = PlainStep()
        if mini_batch_size is not None:
            self.step = CachedStep(mini_batch_size, accumulate_grad_batches, gradient_clip_val)
        self.automatic_optimization = mini_batch_size is None
        self.skipped_batches = 0
        # Weights the embeddings never use (BERT's pooler) are not trained: DDP would refuse
        # the step. They stay in the model and are exported unchanged.
        if frozen := encoder.freeze_unused():
            log.info("Not training (saved unchanged), the embeddings never use: %s", frozen)

    # ---- wiring ------------------------------------------------------------------------------
    def loss_for(self, dataset: str) -> EmbeddingLoss:
        if self.shared_loss is not None:
            return self.shared_loss
        if dataset not in self.losses:
            raise KeyError(
                f"No loss for dataset {dataset!r}; the losses are {sorted(self.losses)}."
            )
        return self.losses[dataset]  # type: ignore[return-value]

    def setup(self, stage: str) -> None:
        """Check the losses against the datasets before the first step (names, columns,
        labels, embedding size); a single loss becomes one entry per dataset name."""
        data = getattr(self.trainer, "datamodule", None)
        if data is None or not hasattr(data, "check_losses"):
            return
        if self.shared_loss is not None:
            self.losses = nn.ModuleDict(dict.fromkeys(data.specs, self.shared_loss))
            self.shared_loss = None
        data.check_losses(dict(self.losses), self.encoder.embedding_dimension)

    def configure_model(self) -> None:
        """Under `trainer=fsdp`, shard the encoder and the losses with weights over all ranks."""
        if fully_sharded(attached_trainer(self)):
            assert self.device_mesh is not None  # set by the strategy before this hook
            policy = mixed_precision_policy(self.trainer.precision)
            shard_module(
                self.encoder, self.losses.values(), self.device_mesh["data_parallel"], policy
            )
            self.embedder.sharded = True  # the same number of forward passes on every rank

    # ---- the step ----------------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        loss = self.loss_for(batch.dataset)
        value = self.step.loss(self, batch, loss)
        total = total_loss(value)
        if not self.agree_and_log(batch, batch_idx, value, total):
            return None
        return self.step.finish(self, total, loss)

    def agree_and_log(
        self, batch: Batch, batch_idx: int, value: Tensor | dict[str, Tensor], total: Tensor
    ) -> bool:
        """The once-per-step agreement of all ranks, in one collective and one host read: is
        the loss finite everywhere, was any rank sent SIGTERM (`CheckpointOnSigterm` stops
        them all after this batch), and the loss values averaged over ranks (the loss of the
        global batch: every rank draws the same dataset at a step), which are then logged.
        Returns False when the batch is skipped (see `skip_or_raise`)."""
        trainer: Any = attached_trainer(self)
        callbacks = trainer.callbacks if trainer is not None else []
        sigterm = [cb for cb in callbacks if isinstance(cb, CheckpointOnSigterm)]
        parts = value if isinstance(value, dict) else {}
        (bad, stop), means = agree(
            [~torch.isfinite(total), any(cb.signalled for cb in sigterm)],
            [total.detach(), *(v.detach() for v in parts.values())],
        )
        for cb in sigterm:
            cb.agreed = stop
        if bad:
            self.skip_or_raise(batch, batch_idx, total)
            return False
        size = batch.size
        self.log("train/loss", means[0], prog_bar=True, batch_size=size)
        self.log(f"train/loss/{batch.dataset}", means[0], batch_size=size)
        for name, mean in zip(parts, means[1:], strict=True):
            self.log(f"train/loss/{batch.dataset}/{name}", mean, batch_size=size)
        return True

    def skip_or_raise(self, batch: Batch, batch_idx: int, total: Tensor) -> None:
        """A non-finite loss on some rank raises (naming the dataset and batch) or, with
        nan_policy="skip", skips the batch on every rank (a lone skip would hang DDP)."""
        here = not bool(torch.isfinite(total))  # read only now that something is wrong
        where = "" if here else " on another rank"
        message = (
            f"Non-finite loss{where} ({total.item()} here) on dataset {batch.dataset!r}, batch "
            f"{batch_idx} (epoch {self.current_epoch}, step {self.global_step})."
        )
        if self.nan_policy == "raise":
            raise FloatingPointError(message + " Set model.nan_policy=skip to skip such batches.")
        self.skipped_batches += 1
        self.log("train/skipped_batches", float(self.skipped_batches))
        self.step.skipped(self)

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        self.step.before_optimizer(self)

    # ---- optimizer ---------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]]:
        named = self.named_parameters()
        return parameter_groups(named, self.lr, self.weight_decay, self.lr_multipliers)

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
    ) -> None:
        """Lightning calls this before every optimizer step, with the Trainer's settings
        (None unless set there); the module's `gradient_clip_val` applies otherwise."""
        value = self.gradient_clip_val if gradient_clip_val is None else gradient_clip_val
        clip_gradients(self, optimizer, value, gradient_clip_algorithm or "norm")

    def configure_optimizers(self) -> Any:
        total = int(self.trainer.estimated_stepping_batches)
        clip = self.trainer.gradient_clip_val or self.gradient_clip_val
        if isinstance(self.step, CachedStep):
            total //= self.step.accumulate_grad_batches
            clip = self.step.gradient_clip_val
        betas, eps = self.adam
        return adamw_with_schedule(
            self.parameter_groups(),
            lr=self.lr,
            betas=betas,
            eps=eps,
            total_steps=total,
            warmup_steps=self.warmup[0],
            warmup_ratio=self.warmup[1],
            schedule=self.scheduler_name,
            scaled_and_clipped=bool(clip) and str(self.trainer.precision) == "16-mixed",
        )

    # ---- checkpoints -------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["st_lightning"] = {
            "architecture": architecture(self.encoder, self.losses),
            "encoder": EncoderDescription.of(self.encoder).to_dict(),  # rebuilt on export
            "config": getattr(self, "run_config", None),  # the composed config, when Hydra ran
            "rng": rng_state(),
            "skipped_batches": self.skipped_batches,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trained = sum(len(g["params"]) for g in self.parameter_groups())
        check_resumable(checkpoint, architecture(self.encoder, self.losses), trained)
        state = checkpoint["st_lightning"]
        restore_rng(state.get("rng"))
        self.skipped_batches = int(state.get("skipped_batches", 0))
