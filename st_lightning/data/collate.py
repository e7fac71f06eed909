"""Pre-tokenized rows -> padded batches, one dataset per batch."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset
from torch import Tensor


@dataclass
class Batch:
    """One training batch: the tokenized features of each input column, from one dataset.

    A column's features are tensors plus, where a prompt is excluded from pooling, the plain
    int `prompt_length` (an int, not a tensor: reading it never waits for the device, and
    columns with different prompt lengths are never merged into one forward)."""

    dataset: str
    features: list[dict[str, Any]]
    labels: Tensor | None = None
    texts: list[list[str]] | None = None  # raw texts per column, when a loss needs them
    # Row lengths per column, kept on the host: token accounting reads them without waiting
    # for the device.
    lengths: list[list[int]] | None = None
    # Streamed data: where the batch's reader stands after it (`st_lightning.data.streaming`);
    # the data module records it when the training loop takes the batch.
    position: dict[str, Any] | None = None

    @property
    def size(self) -> int:
        return int(self.features[0]["input_ids"].shape[0])

    def to(self, device: torch.device | str, non_blocking: bool | None = None) -> Batch:
        """Move the tensors to `device`. Copies to a CUDA device do not block the host (the
        loader pins the batches there), so the next batch is prepared during this step."""
        if non_blocking is None:
            non_blocking = torch.device(device).type == "cuda"
        self.features = [
            {k: _to(v, device, non_blocking) for k, v in f.items()} for f in self.features
        ]
        if self.labels is not None:
            self.labels = self.labels.to(device, non_blocking=non_blocking)
        return self

    def pin_memory(self) -> Batch:
        self.features = [
            {k: v.pin_memory() if isinstance(v, Tensor) else v for k, v in f.items()}
            for f in self.features
        ]
        if self.labels is not None:
            self.labels = self.labels.pin_memory()
        return self


def _to(value: Any, device: torch.device | str, non_blocking: bool) -> Any:
    return value.to(device, non_blocking=non_blocking) if isinstance(value, Tensor) else value


def pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-pad token id lists to the longest: (input_ids, attention_mask)."""
    lengths = torch.tensor([len(r) for r in rows])
    width = int(lengths.max())
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    flat = torch.tensor([t for r in rows for t in r], dtype=torch.long)
    mask = torch.arange(width)[None, :] < lengths[:, None]
    ids[mask] = flat
    return ids, mask.long()


@dataclass
class TokenizedDataset:
    """A dataset after tokenization: token ids per input column, plus the label column."""

    name: str
    data: Dataset
    inputs: tuple[str, ...]
    label: str | None
    prompt_lengths: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.data)

    @staticmethod
    def ids_column(i: int) -> str:
        return f"__input_ids_{i}"


class BatchCollator:
    """Map-style dataset over whole batches: `collator[indices]` -> `Batch`.

    The DataLoader runs it with `batch_size=None`, so a batch is fetched from Arrow with one
    `take` per dataset instead of one lookup per row.
    """

    def __init__(
        self,
        datasets: Mapping[str, TokenizedDataset],
        pad_id: int,
        token_type_ids: bool = False,
        with_texts: bool = False,
    ) -> None:
        self.datasets = dict(datasets)
        self.names = list(self.datasets)
        self.offsets = []
        total = 0
        for name in self.names:
            self.offsets.append(total)
            total += len(self.datasets[name])
        self.total = total
        self.pad_id = pad_id
        self.token_type_ids = token_type_ids
        self.with_texts = with_texts

    def offset_of(self, name: str) -> int:
        return self.offsets[self.names.index(name)]

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, indices: Sequence[int]) -> Batch:
        d = bisect_right(self.offsets, indices[0]) - 1
        source = self.datasets[self.names[d]]
        rows = [i - self.offsets[d] for i in indices]
        if not 0 <= min(rows) <= max(rows) < len(source):
            raise IndexError(f"Batch mixes datasets or leaves {source.name!r}: {indices[:5]}...")
        columns = [TokenizedDataset.ids_column(i) for i in range(len(source.inputs))]
        wanted = columns + ([source.label] if source.label else [])
        if self.with_texts:
            wanted += list(source.inputs)
        table = source.data.select_columns(wanted)[rows]
        features, lengths = [], []
        for col in columns:
            token_ids = table[col]
            ids, mask = pad(token_ids, self.pad_id)
            lengths.append([len(row) for row in token_ids])
            f: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
            if self.token_type_ids:
                f["token_type_ids"] = torch.zeros_like(ids)
            features.append(f)
        for f, length in zip(features, source.prompt_lengths, strict=True):
            if length:
                f["prompt_length"] = int(length)
        labels = torch.tensor(table[source.label]) if source.label else None
        texts = [table[c] for c in source.inputs] if self.with_texts else None
        return Batch(source.name, features, labels, texts, lengths)


def identity(batch: Batch) -> Batch:
    """DataLoader collate_fn for batches that arrive collated (picklable for workers)."""
    return batch


class RowKeys:
    """Per row, hashes of its token ids per column; built on first use (no-duplicates only).

    Token ids, not strings: Python's string hashes differ between processes, int tuples don't,
    so every rank builds the same batches.
    """

    def __init__(self, data: TokenizedDataset) -> None:
        self.data = data
        self._keys: list[tuple[int, ...]] | None = None

    def __getitem__(self, row: int) -> tuple[int, ...]:
        if self._keys is None:
            columns = [
                self.data.data[TokenizedDataset.ids_column(i)] for i in range(len(self.data.inputs))
            ]
            self._keys = [
                tuple(hash(tuple(ids)) for ids in row_ids) for row_ids in zip(*columns, strict=True)
            ]
        return self._keys[row]

    def __len__(self) -> int:
        return len(self.data)


class RowLabels:
    """Per row, its label; read on first use (group-by-label batches only)."""

    def __init__(self, data: TokenizedDataset) -> None:
        self.data = data
        self._labels: list[Any] | None = None

    def _all(self) -> list[Any]:
        if self._labels is None:
            if self.data.label is None:
                raise ValueError(f"Dataset {self.data.name!r} has no label column to group by.")
            self._labels = list(self.data.data[self.data.label])
        return self._labels

    def __iter__(self):
        return iter(self._all())

    def __getitem__(self, row: int) -> Any:
        return self._all()[row]

    def __len__(self) -> int:
        return len(self.data)
