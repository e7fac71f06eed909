"""Pre-tokenized rows -> padded batches, one dataset per batch."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from datasets import Dataset
from torch import Tensor


@dataclass
class Batch:
    """One training batch: the tokenized features of each input column, from one dataset."""

    dataset: str
    features: list[dict[str, Tensor]]
    labels: Tensor | None = None
    texts: list[list[str]] | None = None  # raw texts per column, when a loss needs them

    @property
    def size(self) -> int:
        return int(self.features[0]["input_ids"].shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        self.features = [
            {k: v.to(device, non_blocking=non_blocking) for k, v in f.items()}
            for f in self.features
        ]
        if self.labels is not None:
            self.labels = self.labels.to(device, non_blocking=non_blocking)
        return self

    def pin_memory(self) -> Batch:
        self.features = [{k: v.pin_memory() for k, v in f.items()} for f in self.features]
        if self.labels is not None:
            self.labels = self.labels.pin_memory()
        return self


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
        features = []
        for col in columns:
            ids, mask = pad(table[col], self.pad_id)
            f = {"input_ids": ids, "attention_mask": mask}
            if self.token_type_ids:
                f["token_type_ids"] = torch.zeros_like(ids)
            features.append(f)
        for f, length in zip(features, source.prompt_lengths, strict=True):
            if length:
                f["prompt_length"] = torch.tensor(length)
        labels = torch.tensor(table[source.label]) if source.label else None
        texts = [table[c] for c in source.inputs] if self.with_texts else None
        return Batch(source.name, features, labels, texts)


def identity(batch: Batch) -> Batch:
    """DataLoader collate_fn for batches that arrive collated (picklable for workers)."""
    return batch
