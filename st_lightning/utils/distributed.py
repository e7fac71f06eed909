"""What all ranks must agree on once per training step, in one collective."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """Processes in the default group (1 outside distributed runs)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def agree(flags: Sequence[Tensor | bool], values: Sequence[Tensor]) -> tuple[list[bool], Tensor]:
    """(whether each flag is set on any rank, the values averaged over ranks).

    Flags and values travel in one tensor: one all-reduce and one host read (of the flags)
    per call, however many there are. Flags given as Python bools are filled on the device
    (no host-to-device copy); `values` are scalars on one device and come back as one tensor
    there, so logging them needs no copy either."""
    device = values[0].device
    parts = [
        f.reshape(1).float() if isinstance(f, Tensor) else torch.full((1,), float(f), device=device)
        for f in flags
    ]
    packed = torch.cat(parts + [v.reshape(1).float() for v in values])
    world = world_size()
    if world > 1:
        dist.all_reduce(packed)
    raised = packed[: len(flags)].tolist()  # the one host read
    return [x > 0 for x in raised], packed[len(flags) :] / world
