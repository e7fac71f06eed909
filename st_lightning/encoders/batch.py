"""How the columns of a training batch become embeddings: one object decides and counts.

A training batch holds several tokenized columns (anchor, positive, negatives). Embedding
them one forward per column pads every column to its own longest row. `BatchEmbedder` embeds
the rows of all columns together instead:

- with an unpadded backbone (`SentenceEncoder.runs_unpadded`): one forward over the rows of
  all columns; the per-token layers see real tokens only;
- otherwise, sorted by length and cut into groups of at most `group_tokens` token positions,
  each padded only to its own longest row (long rows a few at a time, short rows many);
- for the layer-wise losses, one `forward_layers` per column.

Each row's embedding does not depend on the other rows, so the loss and gradients are the same
function of the data whichever way is taken. `token_counts` reports what the chosen way
computes, for the throughput monitor.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from st_lightning.encoders.sentence_encoder import SentenceEncoder
from st_lightning.encoders.unpadded import group_sizes, resolve_budget

Columns = list[dict[str, Any]]


def merge_columns(columns: Columns) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The rows of several tokenized columns as one batch, right-padded to the widest column;
    returns (row tensors, the entries shared by all columns such as a prompt length)."""
    width = max(f["attention_mask"].shape[1] for f in columns)
    tensors = [k for k, v in columns[0].items() if isinstance(v, Tensor) and v.dim() == 2]
    merged = {
        k: torch.cat([nn.functional.pad(f[k], (0, width - f[k].shape[1])) for f in columns])
        for k in tensors
    }
    return merged, {k: v for k, v in columns[0].items() if k not in merged}


class BatchEmbedder:
    """Embeds the columns of a batch with `encoder`, rows of similar length together.

    Args:
        encoder: the model (not copied; the embedder holds no weights).
        group_tokens: token positions per padded forward pass of the length grouping ("auto":
            512 on CPU, 16384 on accelerators; None: one forward per column).
    """

    def __init__(
        self, encoder: SentenceEncoder, group_tokens: int | Literal["auto"] | None = "auto"
    ) -> None:
        if group_tokens not in (None, "auto") and not (
            isinstance(group_tokens, int)
            and not isinstance(group_tokens, bool)
            and group_tokens > 0
        ):
            raise ValueError(
                f"length_group_tokens must be a positive int, 'auto' or None, got {group_tokens!r}."
            )
        self.encoder = encoder
        self.group_tokens = group_tokens
        # Under FSDP every forward pass gathers weights with a collective, so all ranks must
        # make the same number of them; the number of length groups depends on the data. The
        # unpadded forward groups attention inside one pass, so it is unaffected.
        self.sharded = False

    def __call__(self, columns: Columns) -> list[Tensor]:
        """One embedding tensor per column."""
        out: list[Tensor | None] = [None] * len(columns)
        for members in self.column_sets(columns):
            part = [columns[i] for i in members]
            grouped = self._merged(part) if self.encoder.runs_unpadded() else self._grouped(part)
            for i, embedding in zip(members, grouped, strict=True):
                out[i] = embedding
        return out  # type: ignore[return-value]

    def layers(self, columns: Columns) -> list[list[Tensor]]:
        """Per layer (the embedding layer's output first, the last layer's last), one
        embedding tensor per column: what the layer-wise losses read."""
        per_column = [self.encoder.forward_layers(f) for f in columns]
        return [list(group) for group in zip(*per_column, strict=True)]

    def budget(self, device: torch.device) -> int | None:
        """Token positions per padded forward pass; None when length grouping is off."""
        return None if self.sharded else resolve_budget(self.group_tokens, device)

    def column_sets(self, columns: Columns) -> list[list[int]]:
        """Indices of the columns that may share forward passes (all of them, usually):
        right-padded columns whose non-tensor entries (a prompt length) agree."""
        right_padded = getattr(self.encoder.tokenizer, "padding_side", "right") == "right"
        if not self.group_tokens or not right_padded:
            return [[i] for i in range(len(columns))]
        sets: dict[tuple, list[int]] = {}
        for i, f in enumerate(columns):
            key = tuple(sorted((k, v if not isinstance(v, Tensor) else None) for k, v in f.items()))
            sets.setdefault(key, []).append(i)
        return list(sets.values())

    def token_counts(
        self, columns: Columns, lengths: list[list[int]] | None = None
    ) -> tuple[int, int]:
        """(real tokens, token positions computed by the per-token layers) when embedding
        `columns`; unpadded, the two are equal (attention is not counted). `lengths`: each
        column's row lengths as the batch carries them on the host; without them they are
        read from the device once."""
        if lengths is None:
            flat = torch.cat([f["attention_mask"].sum(dim=1) for f in columns]).tolist()
            bounds = [0]
            for f in columns:
                bounds.append(bounds[-1] + f["attention_mask"].shape[0])
            lengths = [flat[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        real = sum(sum(rows) for rows in lengths)
        if self.encoder.runs_unpadded():
            return real, real
        computed = 0
        for members in self.column_sets(columns):
            budget = self.budget(columns[members[0]]["attention_mask"].device)
            if budget is None:
                computed += sum(columns[i]["attention_mask"].numel() for i in members)
                continue
            rows = sorted((n for i in members for n in lengths[i]), reverse=True)
            start = 0
            for size in group_sizes(rows, budget):
                computed += rows[start] * size
                start += size
        return real, computed

    def _merged(self, columns: Columns) -> list[Tensor]:
        """One unpadded forward for the rows of all `columns` (attention grouped by length)."""
        if len(columns) == 1:
            return [self.encoder(columns[0])]
        counts = [f["attention_mask"].shape[0] for f in columns]
        merged, rest = merge_columns(columns)
        return list(self.encoder({**merged, **rest}).split(counts))

    def _grouped(self, columns: Columns) -> list[Tensor]:
        budget = self.budget(columns[0]["attention_mask"].device)
        if budget is None:
            return [self.encoder(f) for f in columns]
        counts = [f["attention_mask"].shape[0] for f in columns]
        merged, rest = merge_columns(columns)
        lengths = merged["attention_mask"].sum(dim=1)
        order = lengths.argsort(descending=True)
        sorted_lengths = lengths[order].tolist()  # one host read per batch, not one per group
        sizes = group_sizes(sorted_lengths, budget)
        parts, start = [], 0
        for rows, size in zip(order.split(sizes), sizes, strict=True):
            cut = sorted_lengths[start]
            parts.append(self.encoder({**{k: v[rows, :cut] for k, v in merged.items()}, **rest}))
            start += size
        embeddings = torch.cat(parts)[order.argsort()]
        return list(embeddings.split(counts))
