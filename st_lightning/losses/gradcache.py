"""Gradient caching (GradCache): any embedding loss at any batch size, in bounded memory.

A plain step keeps the activations of the whole batch until the backward pass. A cached step
(Gao et al., 2021) instead

1. embeds every column in mini-batches without autograd, saving the random state of each;
2. computes the loss on the detached embeddings and backpropagates it to them (and to the
   loss's own parameters), which gives d loss / d embedding;
3. embeds each mini-batch again with autograd, under the saved random state so dropout draws
   the same masks, and backpropagates the cached embedding gradients through it.

Peak activation memory is that of one mini-batch, and the parameter gradients are those of a
plain step that embeds in the same mini-batches. Because the loss only ever sees embeddings,
this works for every loss of the package, with no per-loss copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from st_lightning.losses.base import LossOutput

Features = dict[str, Tensor]


@dataclass
class RandomState:
    """The CPU and (when used) CUDA generator states at one point, to replay dropout."""

    cpu: Tensor
    cuda: Tensor | None
    device: torch.device

    @classmethod
    def capture(cls, device: torch.device) -> RandomState:
        cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        return cls(torch.get_rng_state(), cuda, device)

    @contextmanager
    def replay(self) -> Iterator[None]:
        devices = [self.device] if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


def split_features(features: Features, size: int) -> list[Features]:
    """Row chunks of tokenized features, each trimmed to its own longest sequence."""
    rows = features["input_ids"].shape[0]
    chunks = []
    for start in range(0, rows, size):
        chunk = {
            k: v[start : start + size] if isinstance(v, Tensor) and v.dim() else v
            for k, v in features.items()
        }
        width = int(chunk["attention_mask"].sum(dim=1).max())
        chunks.append(
            {
                k: v[:, :width] if isinstance(v, Tensor) and v.dim() == 2 else v
                for k, v in chunk.items()
            }
        )
    return chunks


def total_loss(value: LossOutput) -> Tensor:
    return torch.stack(list(value.values())).sum() if isinstance(value, dict) else value


def cached_backward(
    embed: Callable[[Features], Tensor | list[Tensor]],
    loss: Callable[..., LossOutput],
    columns: Sequence[Features],
    labels: Tensor | None,
    mini_batch_size: int,
    loss_scale: float = 1.0,
    layers: bool = False,
) -> LossOutput:
    """Run steps 1-3 above; gradients accumulate in `.grad`. Returns the detached loss.

    Args:
        embed: tokenized features -> (rows, dim) embeddings (the encoder's forward), or with
            `layers=True` one such tensor per layer (`SentenceEncoder.forward_layers`).
        loss: the loss, called once on the full-batch embeddings (and, with `layers=True`,
            `layer_embeddings=`, so the layer-wise losses work too).
        columns: one tokenized feature dict per input column.
        labels: the batch labels, or None.
        mini_batch_size: rows embedded at once; bounds activation memory.
        loss_scale: multiplies the gradients (e.g. 1 / accumulation steps).
        layers: cache the embeddings of every layer.
    """
    if mini_batch_size < 1:
        raise ValueError(f"mini_batch_size must be >= 1, got {mini_batch_size}.")

    def outputs(chunk: Features) -> list[Tensor]:
        out = embed(chunk)
        return list(out) if layers else [out]  # type: ignore[list-item]

    device = columns[0]["input_ids"].device
    chunks = [split_features(col, mini_batch_size) for col in columns]
    states: list[list[RandomState]] = []
    cached: list[list[Tensor]] = []  # per column, per output (layer)
    with torch.no_grad():
        for col_chunks in chunks:
            col_states, parts = [], []
            for chunk in col_chunks:
                col_states.append(RandomState.capture(device))
                parts.append(outputs(chunk))
            states.append(col_states)
            cached.append([torch.cat(group).requires_grad_() for group in zip(*parts, strict=True)])
    after_first_pass = RandomState.capture(device)

    if layers:
        per_layer = [list(group) for group in zip(*cached, strict=True)]
        value = loss(per_layer[-1], labels, layer_embeddings=per_layer)
    else:
        value = loss([col[0] for col in cached], labels)
    (total_loss(value) * loss_scale).backward()

    for col_chunks, col_states, reps in zip(chunks, states, cached, strict=True):
        grads = [r.grad.split(mini_batch_size) if r.grad is not None else None for r in reps]
        for j, (chunk, state) in enumerate(zip(col_chunks, col_states, strict=True)):
            with state.replay():
                embedded = outputs(chunk)
            pairs = [(e, g[j]) for e, g in zip(embedded, grads, strict=True) if g is not None]
            torch.autograd.backward([e for e, _ in pairs], [g.to(e.dtype) for e, g in pairs])
    # Leave the generators where a plain step would: after one pass over the batch.
    torch.set_rng_state(after_first_pass.cpu)
    if after_first_pass.cuda is not None:
        torch.cuda.set_rng_state(after_first_pass.cuda, device)
    if isinstance(value, dict):
        return {k: v.detach() for k, v in value.items()}
    return value.detach()
