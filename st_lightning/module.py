"""EmbeddingModule: the encoder, one loss per dataset, and the optimizer and schedule."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any, Literal

import lightning as L
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import AdamW
from torch.optim.lr_scheduler import LambdaLR

from st_lightning.data.collate import Batch
from st_lightning.encoders import SentenceEncoder
from st_lightning.encoders.unpadded import group_sizes, resolve_budget
from st_lightning.losses.base import EmbeddingLoss
from st_lightning.losses.gradcache import cached_backward, total_loss
from st_lightning.utils.checkpoint import CheckpointOnSigterm
from st_lightning.utils.distributed import agree, world_size
from st_lightning.utils.fsdp import fully_sharded, mixed_precision_policy, shard_module

log = logging.getLogger(__name__)

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def fusable(groups: list[dict[str, Any]]) -> bool:
    """Whether AdamW's fused kernel takes these parameters (plain float tensors on CPU or CUDA).

    On CPU it steps all-MiniLM-L6-v2 in 13 ms against 95 ms for the default per-tensor loop.
    """
    params = [p for g in groups for p in g["params"]]
    return bool(params) and all(
        type(p) in (torch.Tensor, nn.Parameter)
        and p.device.type in ("cpu", "cuda")
        and p.dtype in (torch.float32, torch.bfloat16, torch.float16)
        for p in params
    )


def merge_columns(
    columns: list[dict[str, Any]],
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The rows of several tokenized columns as one batch, right-padded to the widest column;
    returns (row tensors, the entries shared by all columns such as a prompt length)."""
    width = max(f["attention_mask"].shape[1] for f in columns)
    tensors = [k for k, v in columns[0].items() if isinstance(v, Tensor) and v.dim() == 2]
    merged = {
        k: torch.cat([nn.functional.pad(f[k], (0, width - f[k].shape[1])) for f in columns])
        for k in tensors
    }
    return merged, {k: v for k, v in columns[0].items() if k not in merged}


class EmbeddingModule(L.LightningModule):
    """Trains a `SentenceEncoder` with a dict of losses keyed by dataset name.

    Args:
        encoder: the model being trained (saved at the end in sentence-transformers format).
        losses: dataset name -> loss (a single loss is used for every dataset).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay, except for biases and normalization weights.
        lr_multipliers: parameter-name prefix -> learning-rate factor, e.g. `{"losses": 10.0}`
            for a freshly initialised SoftmaxLoss classifier, `{"encoder.transformer.embeddings":
            0.1}`; the longest matching prefix wins.
        warmup_ratio / warmup_steps: linear warmup over this share / number of optimizer steps
            (steps win when both are set).
        scheduler: "linear" decay to 0, "cosine" decay to 0, or "constant" after the warmup.
        adam_betas, adam_eps: AdamW settings.
        mini_batch_size: turn on gradient caching with this many rows per forward pass (any
            loss; memory is bounded by the mini-batch). Uses manual optimization, so gradient
            clipping and accumulation are set here instead of on the Trainer.
        gradient_clip_val, accumulate_grad_batches: for the cached mode only.
        nan_policy: a non-finite loss "raise"s (naming the dataset and batch) or is "skip"ped
            (counted in `train/skipped_batches`).
        length_group_tokens: embed the rows of all columns of a batch sorted by length, in
            groups of at most this many token positions, each padded only to its own longest
            row, instead of padding each column to its longest (None: one forward per column;
            "auto": 512 on CPU, 16384 on accelerators). The loss and gradients are the same
            function of the data; far fewer padding tokens are computed.
        unpadded: run BERT-family backbones on the real tokens only, padding only inside
            attention (`st_lightning.encoders.unpadded`); other backbones ignore it. The
            function computed is the same.
    """

    def __init__(
        self,
        encoder: SentenceEncoder,
        losses: Mapping[str, EmbeddingLoss] | EmbeddingLoss,
        lr: float = 5e-5,
        weight_decay: float = 0.01,
        lr_multipliers: Mapping[str, float] | None = None,
        warmup_ratio: float = 0.0,
        warmup_steps: int = 0,
        scheduler: Literal["linear", "cosine", "constant"] = "linear",
        adam_betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        mini_batch_size: int | None = None,
        gradient_clip_val: float | None = None,
        accumulate_grad_batches: int = 1,
        nan_policy: Literal["raise", "skip"] = "raise",
        length_group_tokens: int | Literal["auto"] | None = "auto",
        unpadded: bool = True,
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
        if isinstance(losses, EmbeddingLoss):
            self.shared_loss: EmbeddingLoss | None = losses
            losses = {}
        else:
            self.shared_loss = None
        self.losses = nn.ModuleDict(dict(losses))
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_multipliers = dict(lr_multipliers or {})
        self.warmup_ratio = warmup_ratio
        self.warmup_steps = warmup_steps
        self.scheduler_name = scheduler
        self.adam_betas = (float(adam_betas[0]), float(adam_betas[1]))
        self.adam_eps = adam_eps
        self.mini_batch_size = mini_batch_size
        self.gradient_clip_val = gradient_clip_val
        self.accumulate_grad_batches = accumulate_grad_batches
        self.nan_policy = nan_policy
        if length_group_tokens not in (None, "auto") and not (
            isinstance(length_group_tokens, int) and length_group_tokens > 0
        ):
            raise ValueError(
                f"length_group_tokens must be a positive int, 'auto' or None, got "
                f"{length_group_tokens!r}."
            )
        self.length_group_tokens = length_group_tokens
        # BERT-family backbones skip padding positions in every per-token layer (same function),
        # with attention in length-sorted groups of this many token positions.
        self.encoder.unpadded = unpadded
        self.encoder.attention_tokens = length_group_tokens
        # Weights the embeddings never use (BERT's pooler) are not trained: DDP would refuse
        # the step. They stay in the model and are exported unchanged.
        frozen = self.encoder.freeze_unused()
        if frozen:
            log.info(
                "Not training %d parameters that the embeddings do not use (%s); they are "
                "saved unchanged.",
                len(frozen),
                ", ".join(frozen),
            )
        self.skipped_batches = 0
        self.cached_batches = 0
        self.automatic_optimization = mini_batch_size is None
        # Loss parameters given a zero gradient to keep DDP's reducer whole, and those that
        # took part in a loss, since the last optimizer step (see `idle_loss_term`).
        self._idle: set[int] = set()
        self._used: set[int] = set()

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
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "check_losses"):
            return
        names = list(datamodule.specs)
        if self.shared_loss is not None:
            self.losses = nn.ModuleDict(dict.fromkeys(names, self.shared_loss))
            self.shared_loss = None
        datamodule.check_losses(dict(self.losses), self.encoder.embedding_dimension)
        if any(getattr(loss, "needs_guide", False) for loss in self.losses.values()):
            datamodule.with_texts = True
            if getattr(datamodule, "collator", None) is not None:
                datamodule.collator.with_texts = True

    def configure_model(self) -> None:
        """Under `trainer=fsdp`, shard the encoder and the losses with weights over all ranks."""
        if fully_sharded(self._trainer):
            assert self.device_mesh is not None  # set by the strategy before this hook
            mesh = self.device_mesh["data_parallel"]
            policy = mixed_precision_policy(self.trainer.precision)
            shard_module(self.encoder, self.losses.values(), mesh, policy)

    # ---- the step ----------------------------------------------------------------------------
    def embed(self, batch: Batch, loss: EmbeddingLoss) -> tuple[list[Tensor], dict[str, Any]]:
        extra: dict[str, Any] = {}
        if loss.needs_layers:
            per_column = [self.encoder.forward_layers(f) for f in batch.features]
            layers = [list(group) for group in zip(*per_column, strict=True)]
            extra["layer_embeddings"] = layers
            embeddings = layers[-1]
        else:
            embeddings = self.encode_columns(batch.features)
        if loss.needs_guide:
            extra["guide_embeddings"] = self.guide(batch, loss)
        return embeddings, extra

    def encode_columns(self, columns: list[dict[str, Tensor]]) -> list[Tensor]:
        """Embed the columns of a batch, rows of similar length together.

        Rows of all columns that share their tokenization settings (same prompt handling) are
        sorted by length together and embedded in groups, each padded only to its own longest
        row and holding as many rows as fit in `length_group_tokens` token positions: long rows
        go a few at a time, short rows many at a time. An anchor column of long premises and a
        column of short hypotheses then cost what their tokens cost. Each row's embedding does
        not depend on the other rows, so the loss and gradients are the same function of the
        data as with one forward per column.
        """
        out: list[Tensor | None] = [None] * len(columns)
        for members in self._column_sets(columns):
            if self.encoder.runs_unpadded():
                grouped = self._merged([columns[i] for i in members])
            else:
                grouped = self._grouped([columns[i] for i in members])
            for i, embedding in zip(members, grouped, strict=True):
                out[i] = embedding
        return out  # type: ignore[return-value]

    def encode_column(self, features: dict[str, Tensor]) -> Tensor:
        """Embed one column with length grouping (see `encode_columns`)."""
        return self.encode_columns([features])[0]

    def token_counts(
        self, columns: list[dict[str, Tensor]], lengths: list[list[int]] | None = None
    ) -> tuple[int, int]:
        """(real tokens, token positions computed by the per-token layers) of `encode_columns`
        on a batch's columns; unpadded, the two are equal (attention is not counted).
        `lengths`: the rows' lengths per column as the batch carries them on the host; without
        them they are read from the device once."""
        if lengths is None:
            flat = torch.cat([f["attention_mask"].sum(dim=1) for f in columns]).tolist()
            counts = [f["attention_mask"].shape[0] for f in columns]
            lengths = [flat[sum(counts[:i]) : sum(counts[: i + 1])] for i in range(len(counts))]
        real = sum(sum(rows) for rows in lengths)
        if self.encoder.runs_unpadded():
            return real, real
        computed = 0
        for members in self._column_sets(columns):
            mask = columns[members[0]]["attention_mask"]
            budget = self.group_budget(mask.device)
            if budget is None:
                computed += sum(columns[i]["attention_mask"].numel() for i in members)
                continue
            rows = sorted((n for i in members for n in lengths[i]), reverse=True)
            start = 0
            for size in group_sizes(rows, budget):
                computed += rows[start] * size
                start += size
        return real, computed

    def group_budget(self, device: torch.device) -> int | None:
        """Token positions per forward pass of the length grouping; None when it is off.

        Off under FSDP: every forward pass gathers weights with a collective, so all ranks must
        make the same number of them, and the number of length groups depends on the data.
        (The unpadded forward groups attention inside one pass, so it is unaffected.)"""
        if fully_sharded(self._trainer):
            return None
        return resolve_budget(self.length_group_tokens, device)

    def _column_sets(self, columns: list[dict[str, Tensor]]) -> list[list[int]]:
        """Indices of the columns that may share forward passes (all of them, usually)."""
        right_padded = getattr(self.encoder.tokenizer, "padding_side", "right") == "right"
        if not self.length_group_tokens or not right_padded:
            return [[i] for i in range(len(columns))]
        # Columns whose non-tensor entries (such as a prompt length) agree can share forwards.
        sets: dict[tuple, list[int]] = {}
        for i, f in enumerate(columns):
            key = tuple(sorted((k, v if not isinstance(v, Tensor) else None) for k, v in f.items()))
            sets.setdefault(key, []).append(i)
        return list(sets.values())

    def _merged(self, columns: list[dict[str, Tensor]]) -> list[Tensor]:
        """One unpadded forward for the rows of all `columns` (attention grouped by length)."""
        if len(columns) == 1:
            return [self.encoder(columns[0])]
        counts = [f["attention_mask"].shape[0] for f in columns]
        merged, rest = merge_columns(columns)
        return list(self.encoder({**merged, **rest}).split(counts))

    def _grouped(self, columns: list[dict[str, Tensor]]) -> list[Tensor]:
        budget = self.group_budget(columns[0]["attention_mask"].device)
        if budget is None:
            return [self.encoder(f) for f in columns]
        counts = [f["attention_mask"].shape[0] for f in columns]
        merged, rest = merge_columns(columns)
        lengths = merged["attention_mask"].sum(dim=1)
        order = lengths.argsort(descending=True)
        # One host read of all lengths per batch, not one per group.
        sorted_lengths = lengths[order].tolist()
        sizes = group_sizes(sorted_lengths, budget)
        parts, start = [], 0
        for rows, size in zip(order.split(sizes), sizes, strict=True):
            cut = sorted_lengths[start]
            parts.append(self.encoder({**{k: v[rows, :cut] for k, v in merged.items()}, **rest}))
            start += size
        embeddings = torch.cat(parts)[order.argsort()]
        return list(embeddings.split(counts))

    def guide(self, batch: Batch, loss: EmbeddingLoss) -> list[Tensor]:
        if batch.texts is None:
            raise ValueError(f"{type(loss).__name__} needs the batch texts (with_texts=True).")
        return loss.embed_guide(batch.texts, self.device)  # type: ignore[attr-defined,operator]

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        loss_fn = self.loss_for(batch.dataset)
        if self.mini_batch_size is None:
            embeddings, extra = self.embed(batch, loss_fn)
            value = loss_fn(embeddings, batch.labels, **extra)
        else:
            value = self.cached_backward(batch, loss_fn)
        total = total_loss(value)
        if not self.agree_and_log(batch, batch_idx, value, total):
            return None
        if self.mini_batch_size is not None:
            self.cached_optimizer_step()
            return None
        return total + self.idle_loss_term(loss_fn)

    def agree_and_log(
        self, batch: Batch, batch_idx: int, value: Tensor | dict[str, Tensor], total: Tensor
    ) -> bool:
        """The once-per-step agreement of all ranks, in one collective and one host read: is
        the loss finite everywhere, was any rank sent SIGTERM (`CheckpointOnSigterm` stops
        them all after this batch), and the loss values averaged over ranks (the loss of the
        global batch: every rank draws the same dataset at a step), which are then logged.

        A non-finite loss raises (naming the dataset and batch) or, with nan_policy="skip",
        skips the batch on every rank (a lone skip would hang DDP); returns False then."""
        sigterm = [cb for cb in self._callbacks() if isinstance(cb, CheckpointOnSigterm)]
        parts = value if isinstance(value, dict) else {}
        flags, means = agree(
            [~torch.isfinite(total), any(cb.signalled for cb in sigterm)],
            [total.detach(), *(v.detach() for v in parts.values())],
        )
        bad, stop = flags
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
        if self.mini_batch_size is not None:
            for opt in self._optimizer_list():
                opt.zero_grad(set_to_none=True)

    def _callbacks(self) -> list[Any]:
        trainer: Any = self._trainer
        return list(trainer.callbacks) if trainer is not None else []

    def idle_loss_term(self, loss_fn: EmbeddingLoss) -> Tensor | float:
        """Zero, as a function of the weights of the losses that this step does not use.

        Under DDP every trainable parameter must receive a gradient in every backward pass.
        A loss with weights of its own (SoftmaxLoss' classifier) is used only on its
        dataset's steps; on other steps this term hands its weights a zero gradient, and
        `on_before_optimizer_step` removes that gradient again before the optimizer sees it,
        so they are stepped exactly as in a single process (not at all). Every rank draws the
        same dataset at a step, so every rank adds the same term. Cheaper than
        `find_unused_parameters`, which walks the autograd graph on every step."""
        strategy = self._trainer.strategy if self._trainer is not None else None
        wrapper = getattr(strategy, "model", None)
        if not isinstance(wrapper, DistributedDataParallel) or wrapper.find_unused_parameters:
            return 0.0  # no DDP, or DDP searching for unused parameters itself
        used = {id(p) for p in loss_fn.parameters()}
        self._used |= used
        idle = [p for p in self.losses.parameters() if p.requires_grad and id(p) not in used]
        if not idle:
            return 0.0
        self._idle |= {id(p) for p in idle}
        return torch.stack([p.sum() for p in idle]).sum() * 0.0

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        if self._idle:
            for p in self.losses.parameters():
                if id(p) in self._idle and id(p) not in self._used:
                    p.grad = None
        self._idle.clear()
        self._used.clear()

    def cached_backward(self, batch: Batch, loss_fn: EmbeddingLoss) -> Tensor | dict[str, Tensor]:
        """Gradient caching: the batch's gradients accumulated in `.grad`, without syncing."""
        extra = {"guide_embeddings": self.guide(batch, loss_fn)} if loss_fn.needs_guide else {}
        embed = self.encoder.forward_layers if loss_fn.needs_layers else self.encoder

        def loss_call(embeddings: list[Tensor], labels: Tensor | None, **kw: Any) -> Any:
            return loss_fn(embeddings, labels, **extra, **kw)

        # No gradient sync inside the cached backward passes; `average_gradients` does it once.
        no_sync = getattr(self.trainer.strategy, "block_backward_sync", nullcontext)
        with no_sync():
            return cached_backward(
                embed,
                loss_call,
                batch.features,
                batch.labels,
                self.mini_batch_size,  # type: ignore[arg-type]
                loss_scale=1.0 / self.accumulate_grad_batches,
                layers=loss_fn.needs_layers,
            )

    def cached_optimizer_step(self) -> None:
        """After a cached backward whose loss all ranks found finite: at the end of each
        accumulation window, average, clip and step."""
        self.cached_batches += 1
        if self.cached_batches % self.accumulate_grad_batches:
            return
        opt = self._optimizer_list()[0]
        self.average_gradients()
        if self.gradient_clip_val:
            self.clip_gradients(opt, gradient_clip_val=self.gradient_clip_val)
        opt.step()
        opt.zero_grad(set_to_none=True)
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()  # type: ignore[union-attr]

    def average_gradients(self) -> None:
        if fully_sharded(self._trainer):
            return  # FSDP reduce-scatters (averages) the gradients in every backward pass
        world = world_size()
        if world == 1:
            return
        for p in self.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= world

    def _optimizer_list(self) -> list[Any]:
        opts = self.optimizers()
        return opts if isinstance(opts, list) else [opts]

    # ---- optimizer ---------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]]:
        groups: dict[tuple[float, float], list[nn.Parameter]] = {}
        seen: set[int] = set()
        for name, p in self.named_parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            decay = 0.0 if any(k in name for k in NO_DECAY) else self.weight_decay
            prefixes = [k for k in self.lr_multipliers if name.startswith(k)]
            factor = self.lr_multipliers[max(prefixes, key=len)] if prefixes else 1.0
            groups.setdefault((decay, self.lr * factor), []).append(p)
        return [{"params": ps, "weight_decay": wd, "lr": lr} for (wd, lr), ps in groups.items()]

    def configure_optimizers(self) -> Any:
        groups = self.parameter_groups()
        optimizer = AdamW(
            groups, lr=self.lr, betas=self.adam_betas, eps=self.adam_eps, fused=fusable(groups)
        )
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        if self.mini_batch_size is not None:
            total = max(total // self.accumulate_grad_batches, 1)
        warmup = self.warmup_steps or math.ceil(self.warmup_ratio * total)
        schedule = self.scheduler_name

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            if schedule == "constant":
                return 1.0
            progress = min((step - warmup) / max(total - warmup, 1), 1.0)
            if schedule == "cosine":
                return 0.5 * (1.0 + math.cos(math.pi * progress))
            return 1.0 - progress

        scheduler = LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # ---- checkpoints -------------------------------------------------------------------------
    def architecture(self) -> dict[str, Any]:
        config = self.encoder.transformer.config
        return {
            "model_type": getattr(config, "model_type", None),
            "hidden_size": getattr(config, "hidden_size", None),
            "num_hidden_layers": getattr(config, "num_hidden_layers", None),
            "vocab_size": getattr(config, "vocab_size", None),
            "pooling": list(self.encoder.pooling.modes),
            "embedding_dimension": self.encoder.embedding_dimension,
            "losses": {k: type(v).__name__ for k, v in self.losses.items()},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["st_lightning"] = {
            "architecture": self.architecture(),
            "config": getattr(self, "run_config", None),  # rebuilds the encoder on export
            # Dropout draws continue where they were, so a resumed run matches an unbroken one.
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "python": list(random.getstate()[1]),
            },
            "skipped_batches": self.skipped_batches,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("st_lightning", {}).get("architecture")
        if saved is None:
            raise ValueError(
                "This checkpoint was not written by st_lightning (no architecture record)."
            )
        mine = self.architecture()
        diff = {k: (saved.get(k), v) for k, v in mine.items() if saved.get(k) != v}
        if diff:
            raise ValueError(
                "The checkpoint belongs to another model; (checkpoint, this run) differ in "
                f"{diff}. Resume with the same model and losses, or start a new run."
            )
        saved_groups = [
            g["params"]
            for s in checkpoint.get("optimizer_states", [])
            for g in s.get("param_groups", [])
        ]
        trained = sum(len(g["params"]) for g in self.parameter_groups())
        if saved_groups and sum(map(len, saved_groups)) != trained:
            raise ValueError(
                f"The checkpoint's optimizer state holds {sum(map(len, saved_groups))} "
                f"parameters, and this run trains {trained}. Checkpoints written before "
                "st_lightning stopped training weights the embeddings never use (BERT's pooler) "
                "cannot be resumed: export it (python -m st_lightning.export CKPT OUT) and "
                "start a new run from the exported folder."
            )
        state = checkpoint["st_lightning"]
        rng = state.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            if rng["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
            random.setstate((3, tuple(rng["python"]), None))
        self.skipped_batches = int(state.get("skipped_batches", 0))
