"""Fully sharded data parallel training (FSDP2) on Lightning's ModelParallelStrategy.

`trainer=fsdp` selects `FullyShardedStrategy`: Lightning's own ModelParallelStrategy with every
process in the one data-parallel dimension (no tensor parallelism), so parameters, gradients and
optimizer states are sharded over all ranks. `EmbeddingModule.configure_model` applies the
sharding with `shard_module` (torch's `fully_shard`, one unit per transformer layer plus one for
the rest of the encoder and one per loss that has weights). It runs on GPUs (NCCL) and on CPUs
(gloo), which is how the tests exercise it.

Evaluators and the export read the encoder outside the training step, where each rank holds only
its shards: `full_parameters` gathers the whole parameters on every rank for that time.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from torch import nn

from st_lightning.compat.lightning import set_mesh_sizes
from st_lightning.encoders import unpadded

log = logging.getLogger(__name__)
M = TypeVar("M", bound=nn.Module)


class FullyShardedStrategy(ModelParallelStrategy):
    """ModelParallelStrategy with one data-parallel dimension spanning every process of every
    node: plain FSDP2. Checkpoints are whole (assembled on rank 0, one file), so they are
    written atomically, checked before resuming and exported like any other run's."""

    def __init__(self, **kwargs: Any) -> None:
        _refuse_fixed(kwargs)
        super().__init__(save_distributed_checkpoint=False, **kwargs)

    def setup_environment(self) -> None:
        # The sizes are known only once the trainer has set devices and nodes.
        set_mesh_sizes(self, self.num_nodes * self.num_processes, 1)
        super().setup_environment()


FIXED = ("data_parallel_size", "tensor_parallel_size", "save_distributed_checkpoint")


def _refuse_fixed(settings: Any) -> None:
    for key in FIXED:
        if key in settings:
            raise ValueError(
                f"FullyShardedStrategy sets {key} itself (all processes shard one model, "
                f"whole-file checkpoints); remove trainer.strategy.{key}."
            )


def fully_sharded(trainer: L.Trainer | None) -> bool:
    return trainer is not None and isinstance(trainer.strategy, ModelParallelStrategy)


def check_strategy(strategy: Any) -> None:
    """Refuse FSDP1 (Lightning's `strategy=fsdp`) early: the encoder's evaluation, export and
    packed forward are built on FSDP2. Also settings FullyShardedStrategy fixes itself."""
    if isinstance(strategy, Mapping) and str(strategy.get("_target_", "")).endswith(
        "FullyShardedStrategy"
    ):
        _refuse_fixed(strategy)
    if (isinstance(strategy, str) and strategy.startswith("fsdp")) or isinstance(
        strategy, FSDPStrategy
    ):
        raise ValueError(
            f"trainer.strategy={strategy} selects Lightning's FSDP1 strategy, which st_lightning "
            "does not use; choose the trainer=fsdp config group instead (FSDP2 through "
            "Lightning's ModelParallelStrategy), e.g. `trainer=fsdp trainer.devices=8`."
        )


def transformer_layers(backbone: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a Hugging Face backbone: the longest ModuleList whose length is
    the config's number of layers (BERT's `encoder.layer`, DistilBERT's `transformer.layer`,
    ModernBERT's `layers`, ...)."""
    count = getattr(getattr(backbone, "config", None), "num_hidden_layers", None)
    lists = [list(m) for m in backbone.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if count is not None:
        lists = [m for m in lists if len(m) == count]
    return max(lists, key=len) if lists else []


def mixed_precision_policy(precision: Any) -> Any:
    """FSDP2's policy for a trainer precision: under "bf16-mixed", weights are gathered and
    used in bf16 (half the all-gather traffic) and gradients reduced in float32 into the
    float32 shards the optimizer steps; None (float32 throughout) otherwise."""
    if str(precision) != "bf16-mixed":
        return None
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def shard_module(
    encoder: nn.Module, losses: Iterable[nn.Module], mesh: Any, mp_policy: Any = None
) -> None:
    """Shard `encoder` (each transformer layer its own unit, then the rest) and each loss with
    trainable weights over `mesh`. Idempotent. Ranks must then run the same forward calls, so
    the caller keeps the number of encoder calls per step independent of the data.
    `mp_policy`: an FSDP2 `MixedPrecisionPolicy` for every unit (see `mixed_precision_policy`)."""
    from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method

    extra = {"mp_policy": mp_policy} if mp_policy is not None else {}

    if isinstance(encoder, FSDPModule):
        return
    from st_lightning.encoders.adapters import base_model

    # Inside a LoRA wrapper, the backbone whose layers (adapters included) are the units.
    backbone = base_model(getattr(encoder, "transformer", encoder))
    layers = transformer_layers(backbone)
    packed = unpadded.supports(backbone)
    for layer in layers:
        fully_shard(layer, mesh=mesh, **extra)
        if packed:
            # The unpadded forward calls the layer's parts, not its forward: register the
            # packed step as a forward method so FSDP gathers the layer's weights around it.
            setattr(layer, unpadded.PACKED_FORWARD, types.MethodType(unpadded.packed_layer, layer))
            register_fsdp_forward_method(layer, unpadded.PACKED_FORWARD)
    fully_shard(encoder, mesh=mesh, **extra)
    register_fsdp_forward_method(encoder, "forward_layers")
    units = len(layers) + 1
    seen: set[int] = set()
    for loss in losses:
        if id(loss) in seen or isinstance(loss, FSDPModule):
            continue
        seen.add(id(loss))
        if any(p.requires_grad for p in loss.parameters()):
            fully_shard(loss, mesh=mesh, **extra)
            units += 1
    log.info("FSDP: sharded the model in %d units over %d ranks", units, mesh.size())


@contextmanager
def full_parameters(trainer: L.Trainer) -> Iterator[None]:
    """`gathered` on the trainer's model under FSDP; nothing under other strategies."""
    if not fully_sharded(trainer) or trainer.lightning_module is None:
        yield
        return
    with gathered(trainer.lightning_module):
        yield


@contextmanager
def gathered(model: nn.Module) -> Iterator[None]:
    """Inside, every parameter that FSDP shards in `model` is whole on every rank and forward
    passes run without collectives, so ranks may run different numbers of them (sharded
    evaluation: no all-gather per batch) or only rank 0 may run. Every rank must enter: the
    gathering is a collective."""
    from torch.distributed.fsdp import FSDPModule

    modules = [m for m in model.modules() if isinstance(m, FSDPModule)]
    roots = _roots(modules)
    for module in modules:
        module.unshard()
        module.set_reshard_after_forward(False, recurse=False)
    try:
        yield
    finally:
        for module in modules:
            module.reshard()
            # fully_shard's default: outermost units keep their weights between forward and
            # backward, inner units free them after forward.
            module.set_reshard_after_forward(id(module) not in roots, recurse=False)


def whole_copy(trainer: L.Trainer, module: M, build: Callable[[], M]) -> M | None:
    """`module` with whole weights for saving: under FSDP a new module from `build()` holding the
    gathered weights on rank 0 (None on the other ranks; every rank must call, the gathering is
    a collective), otherwise `module` itself."""
    if not fully_sharded(trainer):
        return module
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(module, options=options)  # whole on rank 0, empty elsewhere
    if not trainer.is_global_zero:
        return None
    copy = build()
    copy.load_state_dict(state, strict=True)
    return copy


def _roots(modules: list[Any]) -> set[int]:
    inner = {id(sub) for m in modules for sub in m.modules() if sub is not m}
    return {id(m) for m in modules if id(m) not in inner}
