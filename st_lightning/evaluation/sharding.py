"""Encode a list of texts split over the ranks, and gather the embeddings everywhere."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from st_lightning.evaluation.base import EncodeFn


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous, near-equal shards: rank r encodes rows [start, end)."""
    per = -(-n // world_size)
    return min(rank * per, n), min((rank + 1) * per, n)


def sharded_encoder(
    encode: Callable[[Sequence[str], str | None], Tensor],
    rank: int,
    world_size: int,
    all_gather: Callable[[Tensor], Tensor] | None = None,
    device: torch.device | str = "cpu",
) -> EncodeFn:
    """An `EncodeFn` where each rank embeds only its shard, then all ranks get every row.

    Shards are padded to equal size for the collective (`all_gather`, default
    torch.distributed) and trimmed after (padding rows are not used), so every rank ends with
    identical embeddings and computes identical metrics, and no text is embedded twice.
    `all_gather` maps a tensor to the stack of every rank's copy (Lightning's
    `strategy.all_gather`); `device` is where collectives run.
    """

    def gather(x: Tensor) -> Tensor:
        if all_gather is not None:
            return all_gather(x)
        parts = [torch.empty_like(x) for _ in range(world_size)]
        dist.all_gather(parts, x)
        return torch.stack(parts)

    def encode_all(texts: Sequence[str], prompt_name: str | None) -> Tensor:
        if world_size == 1:
            return encode(texts, prompt_name)
        n = len(texts)
        start, end = shard_bounds(n, rank, world_size)
        per = -(-n // world_size)
        # Every rank embeds exactly `per` texts (the short last shard repeats a text), so all
        # ranks run the same number of forward passes: sharded (FSDP) models need that.
        shard = list(texts[start:end]) + [texts[-1]] * (per - (end - start))
        mine = encode(shard, prompt_name).to(device)
        stacked = gather(mine)  # (world, per, width)
        return stacked.reshape(world_size * per, -1)[:n]

    return encode_all
