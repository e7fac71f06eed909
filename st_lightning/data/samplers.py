"""Batch samplers for one dataset: deterministic for (seed, epoch), sharded by rank.

Every sampler first builds the epoch's *global* batches of `batch_size * world_size` rows and
then gives rank r the r-th slice of each, so all ranks draw the same number of batches and, for
`NoDuplicatesBatchSampler`, the global batch (what gathered in-batch negatives see) holds no
repeated text. An incomplete last global batch is kept only in single-process training without
`drop_last`; otherwise its rows (fewer than one global batch, different ones each epoch) wait
for the next epoch, and the count is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np

log = logging.getLogger(__name__)
T = TypeVar("T")


class BatchSampler:
    """Shuffled batches of one dataset.

    Args:
        num_rows: rows in the dataset.
        batch_size: rows per batch on each rank.
        seed: with the epoch, fixes the order.
        rank, world_size: this process's shard.
        drop_last: drop an incomplete last batch (always done when world_size > 1).
        keys: per row, a hashable of its texts (for `NoDuplicatesBatchSampler`).
        labels: per row, its label (for `GroupByLabelBatchSampler`).
    """

    def __init__(
        self,
        num_rows: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        keys: Sequence[Hashable] | None = None,
        labels: Sequence[Hashable] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}.")
        self.num_rows = num_rows
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last or world_size > 1
        self.keys = keys
        self.labels = labels
        self.epoch = 0
        self.pass_index = 0  # > 0 when a weighted mix draws this dataset past its batches
        self._cache: dict[tuple[int, int], list[list[int]]] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def rng(self) -> np.random.Generator:
        extra = [self.pass_index] if self.pass_index else []
        return np.random.default_rng([self.seed, self.epoch, *extra])

    def global_batches(self) -> list[list[int]]:
        """The epoch's batches of `batch_size * world_size` rows, before sharding."""
        size = self.batch_size * self.world_size
        order = self.rng().permutation(self.num_rows).tolist()
        return [order[i : i + size] for i in range(0, len(order), size)]

    def batches(self, pass_index: int = 0) -> list[list[int]]:
        """This rank's batches for the current epoch (computed once per epoch). A later
        `pass_index` gives another full pass in a new order (for weighted mixing)."""
        key = (self.epoch, pass_index)
        if key in self._cache:
            return self._cache[key]
        if len(self._cache) > 8:
            self._cache.clear()
        self.pass_index = pass_index
        try:
            self._cache[key] = self._shard()
        finally:
            self.pass_index = 0
        return self._cache[key]

    def _shard(self) -> list[list[int]]:
        size = self.batch_size * self.world_size
        full = self.global_batches()
        if self.drop_last:
            short = sum(len(b) for b in full if len(b) < size)
            if short:
                log.info(
                    "Epoch %d: %d rows do not fill a global batch of %d and wait for the next "
                    "epoch.",
                    self.epoch,
                    short,
                    size,
                )
            full = [b for b in full if len(b) == size]
        mine = [b[self.rank * self.batch_size : (self.rank + 1) * self.batch_size] for b in full]
        return [b for b in mine if b]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


class NoDuplicatesBatchSampler(BatchSampler):
    """No text appears twice in a global batch, so no in-batch negative equals a positive.

    Rows are taken in shuffled order; a row that would repeat a text of the open batch waits for
    a later one. Linear in the number of rows (fast on millions). The last batches can end
    smaller when only repeating rows remain; `len()` is exact (the epoch's batches are built
    once, then served).
    """

    def global_batches(self) -> list[list[int]]:
        if self.keys is None:
            raise ValueError("NoDuplicatesBatchSampler needs the texts of each row (keys).")
        size = self.batch_size * self.world_size
        order = self.rng().permutation(self.num_rows).tolist()
        batches, _ = batches_without_repeats(order, self._texts, size, finish=True)
        return batches

    def _texts(self, row: int) -> set[Hashable]:
        key = self.keys[row]  # type: ignore[index]
        return set(key) if isinstance(key, tuple) else {key}


def batches_without_repeats(
    items: Iterable[T], texts: Callable[[T], set[Hashable]], size: int, finish: bool
) -> tuple[list[list[T]], list[T]]:
    """Items in order into batches of `size` in which no text repeats: an item that would
    repeat a text of the open batch waits, and waiting items go first into the next batch.
    Linear in the number of items. `finish`: also batch what is left (only items that repeat
    each other's texts, in smaller batches) and return no rest; otherwise return the open
    batch and the waiting items as the rest (a stream's next block takes them first)."""
    batches: list[list[T]] = []
    current: list[T] = []
    seen: set[Hashable] = set()

    def fill(rows: list[T]) -> list[T]:
        """Add the rows that fit into the open batch; return the others, in order."""
        rest = []
        for row in rows:
            row_texts = texts(row)
            if len(current) < size and seen.isdisjoint(row_texts):
                current.append(row)
                seen.update(row_texts)
            else:
                rest.append(row)
        return rest

    waiting: list[T] = []
    for item in items:
        waiting += fill([item])
        while len(current) == size:
            batches.append(current)
            current, seen = [], set()
            waiting = fill(waiting)  # rows that waited go first into the next batch
    if not finish:
        return batches, current + waiting
    while waiting:  # only rows that repeat each other's texts are left
        waiting = fill(waiting)
        batches.append(current)
        current, seen = [], set()
    if current:
        batches.append(current)
    return batches, []


class GroupByLabelBatchSampler(BatchSampler):
    """Batches of `samples_per_label` rows per label, for the batch triplet losses.

    Rows of each label are shuffled and cut into groups; groups are shuffled and packed into
    batches, so each batch holds several labels with several rows each. Labels with fewer
    than `samples_per_label` rows cannot form a group; their rows are logged and skipped.
    """

    def __init__(self, *args, samples_per_label: int = 2, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if samples_per_label < 2:
            raise ValueError(f"samples_per_label must be >= 2, got {samples_per_label}.")
        self.samples_per_label = samples_per_label

    def global_batches(self) -> list[list[int]]:
        if self.labels is None:
            raise ValueError("GroupByLabelBatchSampler needs the label of each row.")
        rng = self.rng()
        by_label: dict[Hashable, list[int]] = {}
        for row, label in enumerate(self.labels):
            by_label.setdefault(label, []).append(row)
        groups: list[list[int]] = []
        for rows in by_label.values():
            rows = [rows[i] for i in rng.permutation(len(rows))]
            k = self.samples_per_label
            groups += [rows[i : i + k] for i in range(0, len(rows) - k + 1, k)]
        unused = self.num_rows - sum(map(len, groups))
        if unused:
            log.debug("Epoch %d: %d rows do not complete a label group.", self.epoch, unused)
        order = [row for i in rng.permutation(len(groups)) for row in groups[i]]
        size = self.batch_size * self.world_size
        return [order[i : i + size] for i in range(0, len(order), size)]
