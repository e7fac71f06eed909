"""EmbeddingDataModule: named datasets -> validated, tokenized once -> one-dataset batches."""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import lightning as L
import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from st_lightning.data.collate import (
    Batch,
    BatchCollator,
    RowKeys,
    RowLabels,
    TokenizedDataset,
    identity,
)
from st_lightning.data.columns import column_roles, invalid_label_rows, invalid_text_rows
from st_lightning.data.multi import MultiDatasetSampler, ProportionalSampler
from st_lightning.data.prompts import resolve_prompts
from st_lightning.data.samplers import BatchSampler, NoDuplicatesBatchSampler
from st_lightning.data.sources import DatasetSpec, is_streaming, load_source, open_stream
from st_lightning.data.streaming import StepSchedule, StreamingBatches, StreamSource

log = logging.getLogger(__name__)


def tokenize_columns(
    batch: dict[str, list], tokenizer: Any, columns: list[str], prompts: list[str], max_length: int
) -> dict[str, list]:
    """datasets.map function: token ids (unpadded) for each input column."""
    out = {}
    for i, (column, prompt) in enumerate(zip(columns, prompts, strict=True)):
        texts = [prompt + t for t in batch[column]] if prompt else batch[column]
        encoded = tokenizer(texts, truncation=True, max_length=max_length)
        out[TokenizedDataset.ids_column(i)] = encoded["input_ids"]
    return out


class EmbeddingDataModule(L.LightningDataModule):
    """Named training datasets, validated and tokenized once, served one dataset per batch.

    Args:
        datasets: name -> `DatasetSpec` (or its fields as a dict) or an in-memory `Dataset`.
            The name picks the loss (`EmbeddingModule.losses[name]`).
        tokenizer: the encoder's tokenizer, or a model id/folder to load it from.
        batch_size: rows per batch on each device.
        batch_sampler: factory of each dataset's `BatchSampler` (a class or a `partial`), e.g.
            `NoDuplicatesBatchSampler` for in-batch-negative losses.
        multi_dataset_sampler: factory of the `MultiDatasetSampler`
            (`ProportionalSampler`, `RoundRobinSampler`, `WeightedSampler`).
        max_seq_length: tokens per text (default: the tokenizer's limit, at most 512).
        prompts: a prefix for every text, or column -> prefix, or dataset -> either.
        drop_last: drop an incomplete last batch in single-process training.
        seed: fixes the batch order with the epoch.
        num_workers: DataLoader workers.
        on_invalid: rows with empty/None texts or missing/NaN labels: "error" (default) or
            "skip" (dropped, with a logged count and example rows).
        tokenize_num_proc: processes for tokenization (`datasets.map`).
        with_texts: also put the raw texts in each batch (for GISTEmbedLoss's guide).
        eval_datasets: evaluation data whose loss is logged as `val/loss/<name>` (and the
            row-weighted mean over them as `val/loss`) on the evaluation schedule: name ->
            spec, with each name one of `datasets` (its loss and column rules apply), or one
            spec when there is one training dataset.
        eval_batch_size: rows per evaluation batch (default `batch_size`). Batches are the
            eval rows in order, each computed whole on one rank, so the value is the same on
            any number of processes.
        shuffle_buffer: streamed data (a `DatasetSpec` with `streaming=True`): rows read,
            shuffled and cut into batches at once, per dataset and reader. With any streamed
            dataset, every training dataset streams (in-memory ones from memory), batches
            are tokenized in the DataLoader workers, and the run length is
            `trainer.max_steps` (see `st_lightning.data.streaming`).
        streaming: stream every training dataset (as if each spec said `streaming=True`).
    """

    def __init__(
        self,
        datasets: Mapping[str, DatasetSpec | Mapping[str, Any] | Dataset],
        tokenizer: str | PreTrainedTokenizerBase,
        batch_size: int = 32,
        batch_sampler: Callable[..., BatchSampler] = BatchSampler,
        multi_dataset_sampler: Callable[..., MultiDatasetSampler] = ProportionalSampler,
        max_seq_length: int | None = None,
        prompts: str | Mapping[str, Any] | None = None,
        drop_last: bool = False,
        seed: int = 12345,
        num_workers: int = 0,
        on_invalid: Literal["error", "skip"] = "error",
        tokenize_num_proc: int | None = None,
        with_texts: bool = False,
        eval_datasets: Mapping[str, DatasetSpec | Mapping[str, Any] | Dataset]
        | DatasetSpec
        | Dataset
        | None = None,
        eval_batch_size: int | None = None,
        shuffle_buffer: int = 10000,
        streaming: bool = False,
    ) -> None:
        super().__init__()
        if not datasets:
            raise ValueError("EmbeddingDataModule needs at least one dataset.")
        if on_invalid not in ("error", "skip"):
            raise ValueError(f"on_invalid must be 'error' or 'skip', got {on_invalid!r}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.specs = dict(datasets)
        self.eval_specs = eval_specs(eval_datasets, list(self.specs))
        self.eval_batch_size = eval_batch_size or batch_size
        if self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1, got {eval_batch_size}.")
        self._tokenizer = tokenizer
        self.batch_size = batch_size
        self.batch_sampler = batch_sampler
        self.multi_dataset_sampler = multi_dataset_sampler
        self.max_seq_length = max_seq_length
        self.prompts = prompts
        self.drop_last = drop_last
        self.seed = seed
        self.num_workers = num_workers
        self.on_invalid = on_invalid
        self.tokenize_num_proc = tokenize_num_proc
        self.with_texts = with_texts
        self.tokenized: dict[str, TokenizedDataset] = {}
        self.eval_tokenized: dict[str, TokenizedDataset] = {}
        self.sampler: MultiDatasetSampler | None = None
        self._pending_state: Mapping[str, Any] | None = None
        self.streaming = streaming or any(is_streaming(spec) for spec in self.specs.values())
        if shuffle_buffer < batch_size:
            raise ValueError(
                f"shuffle_buffer ({shuffle_buffer}) must hold at least a batch ({batch_size})."
            )
        self.shuffle_buffer = shuffle_buffer
        self.streams: dict[str, StreamSource] = {}
        self.schedule: StepSchedule | None = None
        # Streamed data: the position of the batches the training loop took, newest last.
        self._taken: deque[dict[str, Any]] = deque(maxlen=max(num_workers, 1) + 1)
        self._resume: dict[str, Any] | None = None

    # ---- setup -------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        if isinstance(self._tokenizer, str):
            from st_lightning.encoders.hub import resolve_model_path

            self._tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(self._tokenizer))
        return self._tokenizer

    def max_length(self) -> int:
        """Tokens per text: `max_seq_length`, else the tokenizer's limit, at most 512."""
        return self.max_seq_length or min(self.tokenizer.model_max_length, 512)

    def prompt_lengths(self, prompts: Sequence[str]) -> tuple[int, ...]:
        """Tokens of each prompt without the closing special token (left out of pooling)."""
        return tuple(len(self.tokenizer(p)["input_ids"]) - 1 if p else 0 for p in prompts)

    def setup(self, stage: str | None = None) -> None:
        if self.tokenized or self.streams:
            return
        if self.streaming:
            prompts = self.open_streams()
        else:
            self.tokenized, prompts = self.tokenize(self.specs, "")
        self.eval_tokenized, _ = self.tokenize(self.eval_specs, "eval ", prompts)
        collate: dict[str, Any] = dict(
            pad_id=self.tokenizer.pad_token_id or 0,
            token_type_ids="token_type_ids" in self.tokenizer.model_input_names,
            with_texts=self.with_texts,
        )
        self.collator = BatchCollator(self.tokenized, **collate)
        if self.eval_tokenized:
            self.eval_collator = BatchCollator(self.eval_tokenized, **collate)
        if self.streaming:
            return
        self.sampler = self.build_sampler()
        if self._pending_state is not None:
            self.sampler.load_state_dict(self._pending_state)

    def tokenize(
        self,
        specs: Mapping[str, DatasetSpec | Mapping[str, Any] | Dataset],
        kind: str,
        prompts: Mapping[str, Mapping[str, str]] | None = None,
    ) -> tuple[dict[str, TokenizedDataset], Mapping[str, Mapping[str, str]]]:
        """Load, check (column roles, invalid rows) and tokenize named datasets once; returns
        them and their prompts per column (eval datasets take their training dataset's)."""
        tokenizer = self.tokenizer
        max_length = self.max_length()
        raw = {name: load_source(spec, f"{kind}{name}") for name, spec in specs.items()}
        roles = {name: column_roles(name, ds.column_names) for name, ds in raw.items()}
        if prompts is None:
            prompts = resolve_prompts(self.prompts, {n: r.inputs for n, r in roles.items()})
        out = {}
        for name, ds in raw.items():
            ds = self.drop_invalid(f"{kind}{name}", ds, roles[name].inputs, roles[name].label)
            columns = list(roles[name].inputs)
            col_prompts = [prompts[name].get(c, "") for c in columns]
            tokens = ds.map(
                tokenize_columns,
                batched=True,
                fn_kwargs={
                    "tokenizer": tokenizer,
                    "columns": columns,
                    "prompts": col_prompts,
                    "max_length": max_length,
                },
                num_proc=self.tokenize_num_proc,
                desc=f"Tokenizing {kind}{name}",
            )
            lengths = self.prompt_lengths(col_prompts)
            out[name] = TokenizedDataset(
                name, tokens, roles[name].inputs, roles[name].label, lengths
            )
        return out, prompts

    def open_streams(self) -> Mapping[str, Mapping[str, str]]:
        """Open every training dataset as a stream and check its first rows (column rules,
        empty texts, labels) before training; returns the prompts per column."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None and (trainer.max_steps is None or trainer.max_steps < 0):
            raise ValueError(
                "Streamed datasets have no length, so an epoch has no end: set "
                "trainer.max_steps (the run length, and the learning-rate schedule's)."
            )
        self.no_duplicates = self.stream_batching()
        if self.num_workers > 0:
            # Workers are forked after the main process tokenized (evaluation data).
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        opened = {name: open_stream(spec, name) for name, spec in self.specs.items()}
        heads = {name: first_rows(ds, name) for name, (ds, _, _) in opened.items()}
        roles = {name: column_roles(name, list(head[0])) for name, head in heads.items()}
        prompts = resolve_prompts(self.prompts, {n: r.inputs for n, r in roles.items()})
        for name, (ds, num_rows, source) in opened.items():
            inputs, label = roles[name].inputs, roles[name].label
            self.drop_invalid(name, Dataset.from_list(heads[name]), inputs, label)
            col_prompts = tuple(prompts[name].get(c, "") for c in inputs)
            self.streams[name] = StreamSource(
                name=name,
                dataset=ds,
                inputs=inputs,
                label=label,
                prompts=col_prompts,
                prompt_lengths=self.prompt_lengths(col_prompts),
                num_rows=num_rows,
                head=heads[name],
                source=source,
            )
        factory: Any = self.multi_dataset_sampler
        self.schedule = getattr(factory, "func", factory).for_streams(
            list(self.streams),
            {n: s.num_rows for n, s in self.streams.items()},
            self.seed,
            **getattr(factory, "keywords", {}),
        )
        return prompts

    def stream_batching(self) -> bool:
        """Whether streamed batches must not repeat a text; a batch sampler that needs the
        whole dataset (grouping by label, a custom one) cannot batch a stream."""
        factory = getattr(self.batch_sampler, "func", self.batch_sampler)
        if isinstance(factory, type) and issubclass(factory, NoDuplicatesBatchSampler):
            return True
        if factory is BatchSampler:
            return False
        raise ValueError(
            f"{getattr(factory, '__name__', factory)} cannot batch streamed data: it needs "
            "every row of a dataset at once. Streaming batches shuffled rows "
            "(data.batch_sampler=BatchSampler) or no-duplicates batches "
            "(NoDuplicatesBatchSampler); or load the dataset into memory (streaming=false)."
        )

    def eval_batches(self, rank: int = 0, world_size: int = 1) -> list[tuple[Batch, float]]:
        """This rank's evaluation batches, with their weights. Every dataset's rows are cut
        into consecutive batches of `eval_batch_size`, and batch i goes to rank
        i % world_size; ranks with fewer batches repeat their last one with weight 0, so
        every rank runs the same number of forward passes."""
        self.setup()
        work: list[tuple[str, range]] = []
        for name, data in self.eval_tokenized.items():
            size = self.eval_batch_size
            work += [(name, range(i, min(i + size, len(data)))) for i in range(0, len(data), size)]
        mine = work[rank::world_size]
        per_rank = -(-len(work) // world_size)
        out: list[tuple[Batch, float]] = []
        for name, rows in mine:
            offset = self.eval_collator.offset_of(name)
            out.append((self.eval_collator[[offset + i for i in rows]], 1.0))
        while mine and len(out) < per_rank:
            out.append((out[-1][0], 0.0))
        return out

    def drop_invalid(
        self, name: str, ds: Dataset, inputs: tuple[str, ...], label: str | None
    ) -> Dataset:
        bad: dict[int, str] = {}
        for column in inputs:
            for i in invalid_text_rows(ds[column]):
                bad.setdefault(i, f"{column}={ds[i][column]!r}")
        if label is not None:
            for i in invalid_label_rows(ds[label]):
                bad.setdefault(i, f"{label}={ds[i][label]!r}")
        if not bad:
            return ds
        examples = ", ".join(f"row {i}: {why}" for i, why in list(sorted(bad.items()))[:3])
        if self.on_invalid == "error":
            raise ValueError(
                f"Dataset {name!r} has {len(bad)} row(s) with an empty or missing text or a "
                f"missing/NaN label ({examples}). Clean them, or set on_invalid='skip' to drop "
                "them."
            )
        log.warning("Dataset %r: skipping %d invalid row(s) (%s).", name, len(bad), examples)
        keep = [i for i in range(len(ds)) if i not in bad]
        if not keep:
            raise ValueError(f"Dataset {name!r} has no valid rows left.")
        return ds.select(keep)

    def world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return trainer.global_rank, trainer.world_size
        return 0, 1

    def build_sampler(self) -> MultiDatasetSampler:
        rank, world_size = self.world()
        samplers, offsets = {}, {}
        for name, data in self.tokenized.items():
            samplers[name] = self.batch_sampler(
                num_rows=len(data),
                batch_size=self.batch_size,
                seed=self.seed,
                rank=rank,
                world_size=world_size,
                drop_last=self.drop_last,
                keys=RowKeys(data),
                labels=RowLabels(data),
            )
            offsets[name] = self.collator.offset_of(name)
        return self.multi_dataset_sampler(samplers=samplers, offsets=offsets, seed=self.seed)

    # ---- validation against the losses -------------------------------------------------------
    def check_losses(
        self, losses: Mapping[str, Any], embedding_dimension: int | None = None
    ) -> None:
        """Fail before training when the loss dict and the datasets do not fit each other."""
        if set(losses) != set(self.specs):
            raise ValueError(
                f"The losses are keyed {sorted(losses)} but the datasets are named "
                f"{sorted(self.specs)}; give exactly one loss per dataset name."
            )
        self.setup()
        for name, stream in self.streams.items():
            losses[name].check_columns(name, stream.inputs, stream.label)
            if stream.label is not None:
                values = [row[stream.label] for row in stream.head]
                losses[name].check_labels(name, torch.tensor(values))
            if embedding_dimension is not None:
                losses[name].check_embedding_dimension(embedding_dimension)
        for name, data in [*self.tokenized.items(), *self.eval_tokenized.items()]:
            loss = losses[name]
            loss.check_columns(name, data.inputs, data.label)
            if data.label is not None:
                loss.check_labels(name, torch.tensor(data.data[data.label]))
            if embedding_dimension is not None:
                loss.check_embedding_dimension(embedding_dimension)

    # ---- loaders and state -------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        """Built again every epoch (the trainer configs set reload_dataloaders_every_n_epochs=1):
        an epoch's batch count can change from epoch to epoch (no-duplicate batching, dropped
        incomplete global batches), and Lightning takes the epoch's length from `len()` of
        this loader, so it is computed for the epoch about to run."""
        self.setup()
        if self.streaming:
            return self.loader(self.stream_batches())
        assert self.sampler is not None
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            self.sampler.set_epoch(trainer.current_epoch)
        return self.loader(self.collator, self.sampler)

    def loader(self, dataset: Any, sampler: Any = None) -> DataLoader:
        return DataLoader(
            dataset,
            sampler=sampler,
            batch_size=None,
            collate_fn=identity,  # type: ignore[arg-type]
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            # Its own generator: creating an iterator then draws no number from the global RNG,
            # so dropout masks do not depend on when iterators are created (exact resume).
            generator=torch.Generator().manual_seed(self.seed),
        )

    def stream_batches(self) -> StreamingBatches:
        rank, world_size = self.world()
        readers = max(self.num_workers, 1)
        resume = self._resume
        if resume is not None and (resume["readers_per_rank"], resume["world_size"]) != (
            readers,
            world_size,
        ):
            raise ValueError(
                f"The checkpoint streamed with {resume['world_size']} rank(s) x "
                f"{resume['readers_per_rank']} reader(s) (data.num_workers, 0 counting as 1), "
                f"this run has {world_size} x {readers}; resume with the same numbers."
            )
        return StreamingBatches(
            list(self.streams.values()),
            self.schedule,  # type: ignore[arg-type]
            tokenizer=self.tokenizer,
            max_length=self.max_length(),
            pad_id=self.tokenizer.pad_token_id or 0,
            token_type_ids="token_type_ids" in self.tokenizer.model_input_names,
            batch_size=self.batch_size,
            shuffle_buffer=self.shuffle_buffer,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            num_workers=self.num_workers,
            no_duplicates=self.no_duplicates,
            on_invalid=self.on_invalid,
            with_texts=self.with_texts,
            resume=resume,
        )

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Streamed data: note the position of each batch the training loop takes."""
        if isinstance(batch, Batch) and batch.position is not None:
            self._taken.append(batch.position)
            batch.position = None
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The sampler's epoch and position. Inside a Trainer, the position is the number of
        batches the training loop has processed (DataLoader prefetching runs ahead of it).
        Streamed data: that position and, per reader, the position of its last batch before
        it (what `StreamingBatches` continues from)."""
        trainer = getattr(self, "trainer", None)
        if self.streaming:
            return self.stream_state(trainer)
        if self.sampler is None:
            return {}
        state = self.sampler.state_dict()
        if trainer is not None:
            progress = trainer.fit_loop.epoch_loop.batch_progress.current
            state["epoch"] = trainer.current_epoch
            state["position"] = int(progress.processed)
        return state

    def stream_state(self, trainer: Any) -> dict[str, Any]:
        if not self._taken and self._resume is None:
            return {}
        if trainer is not None:
            position = int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
        else:
            position = self._taken[-1]["step"] + 1
        readers = dict(self._resume["readers"]) if self._resume else {}
        for taken in self._taken:  # oldest first: a reader's newest batch wins
            if taken["step"] < position:
                readers[str(taken["reader"])] = taken["streams"]
        rank_world = self.world()
        return {
            "streaming": True,
            "position": position,
            "readers": readers,
            "readers_per_rank": max(self.num_workers, 1),
            "world_size": rank_world[1],
            "seed": self.seed,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if bool(state_dict.get("streaming")) != self.streaming:
            raise ValueError(
                "The checkpoint's training data "
                + ("streamed" if state_dict.get("streaming") else "was loaded into memory")
                + " and this run's "
                + ("streams" if self.streaming else "is loaded into memory")
                + "; resume with the same data settings."
            )
        if self.streaming:
            if state_dict.get("seed", self.seed) != self.seed:
                raise ValueError(
                    f"The checkpoint streamed with seed {state_dict['seed']}, this run uses "
                    f"{self.seed}; resume with the same seed."
                )
            self._resume = dict(state_dict)
            return
        if self.sampler is not None:
            self.sampler.load_state_dict(state_dict)
        else:
            self._pending_state = state_dict


HEAD_ROWS = 256  # first rows of a stream checked before training


def first_rows(ds: Any, name: str) -> list[dict[str, Any]]:
    """The first rows of a stream (read once in the main process), as dicts."""
    chunk = next(iter(ds.iter(batch_size=HEAD_ROWS)), None)
    if not chunk or not next(iter(chunk.values()), None):
        raise ValueError(f"Dataset {name!r} streams no rows; check its path, split and files.")
    columns = list(chunk)
    return [dict(zip(columns, values, strict=True)) for values in zip(*chunk.values(), strict=True)]


def eval_specs(
    value: Mapping[str, Any] | DatasetSpec | Dataset | None, names: list[str]
) -> dict[str, Any]:
    """`eval_datasets` as name -> spec: one spec takes the only training dataset's name."""
    if value is None:
        return {}
    single = isinstance(value, DatasetSpec | Dataset) or (
        isinstance(value, Mapping) and "path" in value
    )
    if single:
        if len(names) != 1:
            raise ValueError(
                f"One eval dataset was given but there are {len(names)} training datasets "
                f"({names}); name it by the training dataset whose loss it uses: "
                f"eval_datasets: {{{names[0]}: ...}}."
            )
        return {names[0]: value}
    assert isinstance(value, Mapping)
    unknown = [n for n in value if n not in names]
    if unknown:
        raise ValueError(
            f"eval_datasets {unknown} are not training dataset names {names}; each eval "
            "dataset is named by the training dataset whose loss it uses."
        )
    return dict(value)
