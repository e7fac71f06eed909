"""Streaming training data: rows read from their shards while training, never all in memory.

The reader is the `datasets` library's `IterableDataset` (local parquet / jsonl / csv shards,
a dataset folder or a Hub id, opened with `streaming=True`): it splits the shards between
readers (`split_dataset_by_node`), shuffles their order each pass (`set_epoch`) and reports a
resumable position (`state_dict`). On top of it, per dataset and reader:

- a *block* of `shuffle_buffer` rows is read at once, shuffled with a seeded generator and cut
  into batches (no-duplicates batches: a row that would repeat a text of the open batch waits
  for the next one); rows that complete no batch go first into the next block, so no row is
  dropped or waits more than a block, and the carry stays smaller than a batch (plus, rarely,
  waiting duplicates);
- the position of a reader is (pass, the library's state at the start of its block, the rows
  carried into the block, batches served from it): a resumed reader reads that one block again
  and continues with the next batch, so a resumed run gets exactly the batches it had left.

Readers: every rank has `max(num_workers, 1)` of them, each a DataLoader worker that reads,
tokenizes and pads its own batches; reader `w` of rank `r` is node `r * W + w` of `world * W`
for the shard split. Global step `s` is produced by reader `s % W`, and the dataset of step `s`
comes from a schedule that depends only on (seed, s), so every rank trains on the same dataset
at every step and all ranks have the same number of batches (the stream has no end; the run
length is `trainer.max_steps`). Each batch carries its reader's position; the data module
records the position of every batch the training loop takes and saves those in checkpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from datasets import IterableDataset
from datasets.distributed import split_dataset_by_node

from st_lightning.data.collate import Batch, pad
from st_lightning.data.columns import invalid_label_rows, invalid_text_rows
from st_lightning.data.samplers import batches_without_repeats

log = logging.getLogger(__name__)

SCHEDULE_CHUNK = 4096  # steps drawn at once by a weighted schedule


@dataclass
class StreamSource:
    """One streaming dataset as the readers need it: the library's iterable dataset (columns
    selected, `max_samples` applied), its input and label columns, the prompt of each input
    column, and its first rows (checked before training; the model card's examples)."""

    name: str
    dataset: IterableDataset
    inputs: tuple[str, ...]
    label: str | None
    prompts: tuple[str, ...]
    prompt_lengths: tuple[int, ...]
    num_rows: int | None
    head: list[dict[str, Any]]
    source: str

    @property
    def columns(self) -> list[str]:
        return [*self.inputs, *([self.label] if self.label else [])]


class StepSchedule:
    """The dataset of each global step, a function of (seed, step) only: the same on every
    rank and every reader, and after a resume. `probabilities` draws at random (weighted or
    temperature mixing); None takes the datasets in turn."""

    def __init__(self, count: int, probabilities: Any, seed: int) -> None:
        self.count = count
        self.probabilities = None if probabilities is None else np.asarray(probabilities)
        self.seed = seed
        self._chunk: tuple[int, np.ndarray] | None = None

    def dataset_at(self, step: int) -> int:
        if self.count == 1:
            return 0
        if self.probabilities is None:
            return step % self.count
        index, offset = divmod(step, SCHEDULE_CHUNK)
        if self._chunk is None or self._chunk[0] != index:
            rng = np.random.default_rng([self.seed, index, 7919])
            self._chunk = (index, rng.choice(self.count, SCHEDULE_CHUNK, p=self.probabilities))
        return int(self._chunk[1][offset])


class RowStream:
    """One dataset's batches of rows for one reader: shuffled blocks cut into batches.

    Args:
        source: the dataset.
        index: its position among the datasets (part of the shuffle seed).
        node, nodes: this reader's share of the shards.
        batch_size, shuffle_buffer, seed: batch rows, block rows, and the shuffle seed.
        no_duplicates: no text twice in a batch.
        on_invalid: an empty text or a missing label: "error" or "skip" (logged).
        state: a position from `state()` to continue from.
    """

    def __init__(
        self,
        source: StreamSource,
        index: int,
        node: int,
        nodes: int,
        batch_size: int,
        shuffle_buffer: int,
        seed: int,
        no_duplicates: bool = False,
        on_invalid: str = "error",
        state: Mapping[str, Any] | None = None,
    ) -> None:
        self.source = source
        self.index = index
        self.node, self.nodes = node, nodes
        self.batch_size = batch_size
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.no_duplicates = no_duplicates
        self.on_invalid = on_invalid
        self.pass_index = 0
        self.block_number = -1
        self.carry: list[dict[str, Any]] = []
        self.block_start: dict[str, Any] | None = None  # the library's state before the block
        self._next_start: dict[str, Any] | None = None  # and after it
        self.block_carry: list[dict[str, Any]] = []
        self.batches: list[list[dict[str, Any]]] = []
        self.served = 0
        self.reads_in_pass = 0
        self._dataset: IterableDataset | None = None
        self._iterator: Iterator[dict[str, list]] | None = None
        if state is not None:
            self._restore(state)

    # ---- position ----------------------------------------------------------------------------
    def state(self) -> dict[str, Any] | None:
        """Where this reader stands: enough to rebuild its current block and continue."""
        if self.block_number < 0:
            return None
        return {
            "pass": self.pass_index,
            "block": self.block_number,
            "start": self.block_start,
            "carry": list(self.block_carry),
            "served": self.served,
        }

    def _restore(self, state: Mapping[str, Any]) -> None:
        self.pass_index = int(state["pass"])
        self._open(state["start"])
        self.block_number = int(state["block"]) - 1
        self.carry = list(state["carry"])
        if not self._read_block():
            raise RuntimeError(
                f"Dataset {self.source.name!r}: the checkpoint's stream position is past the "
                "end of the data; were its shards changed since the checkpoint was saved?"
            )
        self.served = int(state["served"])

    # ---- reading -----------------------------------------------------------------------------
    def _open(self, start: Mapping[str, Any] | None) -> None:
        # A copy of the source (also with one node): a reader's epoch and position are its own.
        ds = split_dataset_by_node(self.source.dataset, rank=self.node, world_size=self.nodes)
        ds.set_epoch(self.pass_index)  # a new shard order every pass
        if start is not None:
            ds.load_state_dict(dict(start))
        self._dataset = ds
        self._iterator = ds.iter(batch_size=self.shuffle_buffer)
        self._next_start = dict(start) if start is not None else None
        self.reads_in_pass = 0 if start is None else 1

    def _read_block(self) -> bool:
        """Read the next block and cut it into batches; False at the end of the pass."""
        assert self._iterator is not None and self._dataset is not None
        try:
            chunk = next(self._iterator)
        except StopIteration:
            return False
        self.block_start = self._next_start
        self._next_start = self._dataset.state_dict()
        self.reads_in_pass += 1
        self.block_number += 1
        rows = self._valid_rows(chunk)
        self.block_carry = self.carry
        order = np.random.default_rng(
            [self.seed, self.node, self.index, self.pass_index, self.block_number]
        ).permutation(len(rows))
        # Rows carried over go first: no row waits longer than one block.
        self.batches, self.carry = self._cut(self.carry + [rows[i] for i in order])
        self.served = 0
        return True

    def _valid_rows(self, chunk: Mapping[str, list]) -> list[dict[str, Any]]:
        columns = self.source.columns
        missing = [c for c in columns if c not in chunk]
        if missing:
            raise ValueError(
                f"Dataset {self.source.name!r}: rows without column(s) {missing} in the stream "
                f"(its first rows had them); every shard needs the columns {columns}."
            )
        bad: dict[int, str] = {}
        for column in self.source.inputs:
            for i in invalid_text_rows(chunk[column]):
                bad.setdefault(i, f"{column}={chunk[column][i]!r}")
        if self.source.label is not None:
            for i in invalid_label_rows(chunk[self.source.label]):
                bad.setdefault(i, f"{self.source.label}={chunk[self.source.label][i]!r}")
        n = len(chunk[columns[0]])
        if bad:
            examples = ", ".join(why for _, why in sorted(bad.items())[:3])
            if self.on_invalid == "error":
                raise ValueError(
                    f"Dataset {self.source.name!r} streams {len(bad)} row(s) with an empty or "
                    f"missing text or a missing/NaN label ({examples}). Clean the shards, or "
                    "set on_invalid='skip' to drop them."
                )
            log.warning(
                "Dataset %r: skipping %d invalid streamed row(s) (%s).",
                self.source.name,
                len(bad),
                examples,
            )
        return [{c: chunk[c][i] for c in columns} for i in range(n) if i not in bad]

    def _cut(self, block: list[dict[str, Any]]) -> tuple[list[list[dict[str, Any]]], list]:
        """Full batches of the block, and the rows left for the next block."""
        size = self.batch_size
        if not self.no_duplicates:
            whole = len(block) // size * size
            return [block[i : i + size] for i in range(0, whole, size)], block[whole:]
        inputs = self.source.inputs
        batches, left = batches_without_repeats(
            block, lambda row: {row[c] for c in inputs}, size, finish=False
        )
        if len(left) > max(self.shuffle_buffer // 2, 2 * size):
            raise ValueError(
                f"Dataset {self.source.name!r}: {len(left)} rows of a block of {len(block)} "
                f"found no batch of {size} without a repeated text. Raise "
                "data.shuffle_buffer, or remove duplicate rows."
            )
        return batches, left

    def next_batch(self) -> list[dict[str, Any]]:
        while self.block_number < 0 or self.served >= len(self.batches):
            if self._iterator is None:
                self._open(None)
            if self._read_block():
                continue
            if self.reads_in_pass == 0:
                raise ValueError(
                    f"Dataset {self.source.name!r} gives no rows to reader {self.node} of "
                    f"{self.nodes} (ranks x workers): it has fewer rows than readers. Use "
                    "fewer data.num_workers or more rows."
                )
            self.pass_index += 1  # the end of the data: the next pass, in a new order
            self._open(None)
        batch = self.batches[self.served]
        self.served += 1
        return batch


class StreamingBatches(torch.utils.data.IterableDataset):
    """The DataLoader's dataset for streamed training data: tokenized, padded batches, one
    dataset per batch, without end. See the module docstring for readers and positions.

    Args:
        sources: the datasets, in schedule order.
        schedule: the dataset of each step.
        tokenizer, max_length, pad_id, token_type_ids: how texts become features.
        batch_size, shuffle_buffer, seed, no_duplicates, on_invalid: see `RowStream`.
        rank, world_size, num_workers: the readers (`num_workers` 0 reads in the training
            process, as one reader).
        with_texts: also put the raw texts in each batch.
        resume: the data module's saved position (`position` and each reader's state).
    """

    def __init__(
        self,
        sources: Sequence[StreamSource],
        schedule: StepSchedule,
        tokenizer: Any,
        max_length: int,
        pad_id: int,
        token_type_ids: bool,
        batch_size: int,
        shuffle_buffer: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        no_duplicates: bool = False,
        on_invalid: str = "error",
        with_texts: bool = False,
        resume: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.sources = list(sources)
        self.schedule = schedule
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad_id = pad_id
        self.token_type_ids = token_type_ids
        self.batch_size = batch_size
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.readers = max(num_workers, 1)
        self.no_duplicates = no_duplicates
        self.on_invalid = on_invalid
        self.with_texts = with_texts
        self.resume = resume

    def reader(self) -> tuple[int, int]:
        """(this reader's index, the first step it produces) after a resume at `position`:
        worker j continues reader (j + position) % W, whose next step is position + j."""
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        start = int(self.resume["position"]) if self.resume else 0
        return (worker + start) % self.readers, start + worker

    def streams(self, reader: int) -> list[RowStream]:
        states = (self.resume or {}).get("readers", {}).get(str(reader)) or {}
        return [
            RowStream(
                source,
                i,
                node=self.rank * self.readers + reader,
                nodes=self.world_size * self.readers,
                batch_size=self.batch_size,
                shuffle_buffer=self.shuffle_buffer,
                seed=self.seed,
                no_duplicates=self.no_duplicates,
                on_invalid=self.on_invalid,
                state=states.get(source.name),
            )
            for i, source in enumerate(self.sources)
        ]

    def __iter__(self) -> Iterator[Batch]:
        reader, step = self.reader()
        streams = self.streams(reader)
        while True:
            d = self.schedule.dataset_at(step)
            batch = self.collate(self.sources[d], streams[d].next_batch())
            batch.position = {
                "step": step,
                "reader": reader,
                "streams": {s.source.name: s.state() for s in streams},
            }
            step += self.readers
            yield batch

    def collate(self, source: StreamSource, rows: list[dict[str, Any]]) -> Batch:
        features, lengths = [], []
        for column, prompt in zip(source.inputs, source.prompts, strict=True):
            texts = [prompt + row[column] if prompt else row[column] for row in rows]
            token_ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)[
                "input_ids"
            ]
            ids, mask = pad(token_ids, self.pad_id)
            f: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
            if self.token_type_ids:
                f["token_type_ids"] = torch.zeros_like(ids)
            features.append(f)
            lengths.append([len(t) for t in token_ids])
        for f, length in zip(features, source.prompt_lengths, strict=True):
            if length:
                f["prompt_length"] = int(length)
        labels = torch.tensor([row[source.label] for row in rows]) if source.label else None
        raw = [[row[c] for row in rows] for c in source.inputs] if self.with_texts else None
        return Batch(source.name, features, labels, raw, lengths)
