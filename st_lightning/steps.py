"""The two ways a training step turns a batch into gradients, chosen once per run.

`PlainStep`: embed the batch, compute the loss, return it; Lightning runs backward and the
optimizer. `CachedStep` (gradient caching, `mini_batch_size`): embeddings without a graph, the
loss and its gradients with respect to the embeddings, then one backward pass per mini-batch;
memory is bounded by the mini-batch and the gradients equal the plain step's. It steps the
optimizer itself (manual optimization), after all ranks agreed that the loss was finite.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from st_lightning.compat.lightning import attached_trainer
from st_lightning.data.collate import Batch
from st_lightning.losses.base import EmbeddingLoss
from st_lightning.losses.gradcache import cached_backward
from st_lightning.optim import clip_gradients
from st_lightning.utils.distributed import world_size
from st_lightning.utils.fsdp import fully_sharded

if TYPE_CHECKING:
    from st_lightning.module import EmbeddingModule

LossValue = Tensor | dict[str, Tensor]


def guide_embeddings(batch: Batch, loss: EmbeddingLoss, device: torch.device) -> list[Tensor]:
    """The guide model's embeddings of the batch texts, for the losses that read them."""
    if batch.texts is None:
        raise ValueError(f"{type(loss).__name__} needs the batch texts (with_texts=True).")
    return loss.embed_guide(batch.texts, device)  # type: ignore[attr-defined,operator]


class PlainStep:
    """Forward, loss, and (under DDP) a zero term that keeps the reducer whole."""

    def __init__(self) -> None:
        # Loss weights handed a zero gradient, and those that took part in a loss, since the
        # last optimizer step (see `idle_term`).
        self.idle: set[int] = set()
        self.used: set[int] = set()

    def loss(self, module: EmbeddingModule, batch: Batch, loss: EmbeddingLoss) -> LossValue:
        extra: dict[str, Any] = {}
        if loss.needs_layers:
            layers = module.embedder.layers(batch.features)
            extra["layer_embeddings"] = layers
            embeddings = layers[-1]
        else:
            embeddings = module.embedder(batch.features)
        if loss.needs_guide:
            extra["guide_embeddings"] = guide_embeddings(batch, loss, module.device)
        return loss(embeddings, batch.labels, **extra)

    def finish(self, module: EmbeddingModule, total: Tensor, loss: EmbeddingLoss) -> Tensor:
        return total + self.idle_term(module, loss)

    def idle_term(self, module: EmbeddingModule, loss: EmbeddingLoss) -> Tensor | float:
        """Zero, as a function of the weights of the losses this step does not use.

        Under DDP every trainable parameter must receive a gradient in every backward pass.
        A loss with weights of its own (SoftmaxLoss' classifier) is used only on its dataset's
        steps; on other steps this term hands its weights a zero gradient, and `before_optimizer`
        removes that gradient again, so they are stepped exactly as in a single process (not at
        all). Every rank draws the same dataset at a step, so every rank adds the same term.
        Cheaper than `find_unused_parameters`, which walks the autograd graph every step."""
        trainer = attached_trainer(module)
        wrapper = getattr(trainer.strategy, "model", None) if trainer is not None else None
        if not isinstance(wrapper, DistributedDataParallel) or wrapper.find_unused_parameters:
            return 0.0  # no DDP, or DDP searching for unused parameters itself
        used = {id(p) for p in loss.parameters()}
        self.used |= used
        idle = [p for p in module.losses.parameters() if p.requires_grad and id(p) not in used]
        if not idle:
            return 0.0
        self.idle |= {id(p) for p in idle}
        return torch.stack([p.sum() for p in idle]).sum() * 0.0

    def before_optimizer(self, module: EmbeddingModule) -> None:
        if self.idle:
            for p in module.losses.parameters():
                if id(p) in self.idle and id(p) not in self.used:
                    p.grad = None
        self.idle.clear()
        self.used.clear()

    def skipped(self, module: EmbeddingModule) -> None:
        """Nothing to undo: Lightning runs no backward for a step that returns None."""


class CachedStep:
    """Gradient caching with `mini_batch_size` rows per forward pass (any loss).

    Args:
        mini_batch_size: rows per forward/backward pass.
        accumulate_grad_batches: batches per optimizer step.
        gradient_clip_val: clip the gradient norm to this before each optimizer step.
    """

    def __init__(
        self, mini_batch_size: int, accumulate_grad_batches: int, gradient_clip_val: float | None
    ) -> None:
        self.mini_batch_size = mini_batch_size
        self.accumulate_grad_batches = accumulate_grad_batches
        self.gradient_clip_val = gradient_clip_val
        self.batches = 0

    def loss(self, module: EmbeddingModule, batch: Batch, loss: EmbeddingLoss) -> LossValue:
        """The batch's gradients accumulated in `.grad`, without syncing; returns the loss."""
        guide = guide_embeddings(batch, loss, module.device) if loss.needs_guide else None
        extra = {"guide_embeddings": guide} if guide is not None else {}
        encoder = module.encoder
        embed = encoder.forward_layers if loss.needs_layers else encoder

        def loss_call(embeddings: list[Tensor], labels: Tensor | None, **kw: Any) -> Any:
            return loss(embeddings, labels, **extra, **kw)

        # No gradient sync inside the cached backward passes; `average_gradients` does it once.
        no_sync = getattr(module.trainer.strategy, "block_backward_sync", nullcontext)
        with no_sync():
            return cached_backward(
                embed,
                loss_call,
                batch.features,
                batch.labels,
                self.mini_batch_size,
                loss_scale=1.0 / self.accumulate_grad_batches,
                layers=loss.needs_layers,
            )

    def finish(self, module: EmbeddingModule, total: Tensor, loss: EmbeddingLoss) -> None:
        """At the end of each accumulation window: average, clip and step."""
        self.batches += 1
        if self.batches % self.accumulate_grad_batches:
            return None
        opt = optimizers(module)[0]
        average_gradients(module)
        clip_gradients(module, opt, self.gradient_clip_val)
        opt.step()
        opt.zero_grad(set_to_none=True)
        scheduler = module.lr_schedulers()
        if scheduler is not None:
            scheduler.step()  # type: ignore[union-attr]
        return None

    def before_optimizer(self, module: EmbeddingModule) -> None:
        """Gradient caching steps the optimizer itself."""

    def skipped(self, module: EmbeddingModule) -> None:
        for opt in optimizers(module):
            opt.zero_grad(set_to_none=True)


def optimizers(module: EmbeddingModule) -> list[Any]:
    opts = module.optimizers()
    return opts if isinstance(opts, list) else [opts]


def average_gradients(module: EmbeddingModule) -> None:
    if fully_sharded(attached_trainer(module)):
        return  # FSDP reduce-scatters (averages) the gradients in every backward pass
    world = world_size()
    if world == 1:
        return
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world
