"""Whole parameters where FSDP shards them: for evaluation and export outside the training step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import lightning as L


@contextmanager
def full_parameters(trainer: L.Trainer, rank0_only: bool = False) -> Iterator[None]:
    """Inside, every parameter of the model is whole on this rank (on rank 0 only, with
    `rank0_only`). FSDP keeps parameters sharded outside its own forward, so an evaluator or an
    export that reads the encoder directly must run here; every rank must enter, since
    gathering the shards is a collective. Under other strategies nothing happens."""
    from lightning.pytorch.strategies import FSDPStrategy

    strategy = trainer.strategy
    if not isinstance(strategy, FSDPStrategy) or strategy.model is None:
        yield
        return
    from torch.distributed.fsdp import FullyShardedDataParallel

    with FullyShardedDataParallel.summon_full_params(
        strategy.model, writeback=False, rank0_only=rank0_only
    ):
        yield
