"""The loss on the evaluation datasets (`data.eval_datasets`), sharded over ranks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from st_lightning.losses.gradcache import total_loss


@contextmanager
def local_batches(losses: Iterable[nn.Module]) -> Iterator[None]:
    """Losses that gather candidates from every rank score each batch on its own here: an
    evaluation batch is whole on one rank."""
    switched = [
        m for loss in losses for m in loss.modules() if getattr(m, "gather_across_devices", False)
    ]
    for m in switched:
        setattr(m, "gather_across_devices", False)  # noqa: B010 - any loss module with the flag
    try:
        yield
    finally:
        for m in switched:
            setattr(m, "gather_across_devices", True)  # noqa: B010


@torch.no_grad()
def evaluation_loss(
    module: Any, data: Any, rank: int, world_size: int, reduce: Any
) -> dict[str, float]:
    """`val/loss/<name>` per eval dataset and `val/loss` over all of them: the mean of the
    per-batch losses weighted by rows, the batches being each dataset's rows in order, in
    `data.eval_batch_size` (the same value on any number of ranks). `reduce` sums a tensor
    over ranks."""
    from st_lightning.steps import PlainStep

    names = list(data.eval_tokenized)
    if not names:
        return {}
    sums = torch.zeros(len(names), 2, dtype=torch.float64, device=module.device)
    step = PlainStep()
    with local_batches(module.losses.values()):
        for batch, weight in data.eval_batches(rank, world_size):
            batch = batch.to(module.device)
            value = total_loss(step.loss(module, batch, module.loss_for(batch.dataset)))
            i = names.index(batch.dataset)
            sums[i, 0] += weight * float(value) * batch.size
            sums[i, 1] += weight * batch.size
    if world_size > 1:
        sums = reduce(sums)
    out = {f"val/loss/{n}": float(sums[i, 0] / sums[i, 1]) for i, n in enumerate(names)}
    out["val/loss"] = float(sums[:, 0].sum() / sums[:, 1].sum())
    return out
