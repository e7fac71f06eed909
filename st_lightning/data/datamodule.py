"""EmbeddingDataModule: named datasets -> validated, tokenized once -> one-dataset batches."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
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
from st_lightning.data.samplers import BatchSampler
from st_lightning.data.sources import DatasetSpec, load_source

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

    # ---- setup -------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        if isinstance(self._tokenizer, str):
            from st_lightning.encoders.hub import resolve_model_path

            self._tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(self._tokenizer))
        return self._tokenizer

    def setup(self, stage: str | None = None) -> None:
        if self.tokenized:
            return
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
        max_length = self.max_seq_length or min(tokenizer.model_max_length, 512)
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
            lengths = tuple(len(tokenizer(p)["input_ids"]) - 1 if p else 0 for p in col_prompts)
            out[name] = TokenizedDataset(
                name, tokens, roles[name].inputs, roles[name].label, lengths
            )
        return out, prompts

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
        assert self.sampler is not None
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            self.sampler.set_epoch(trainer.current_epoch)
        return DataLoader(
            self.collator,  # type: ignore[arg-type]
            sampler=self.sampler,  # type: ignore[arg-type]
            batch_size=None,
            collate_fn=identity,  # type: ignore[arg-type]
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            # Its own generator: creating an iterator then draws no number from the global RNG,
            # so dropout masks do not depend on when iterators are created (exact resume).
            generator=torch.Generator().manual_seed(self.seed),
        )

    def state_dict(self) -> dict[str, Any]:
        """The sampler's epoch and position. Inside a Trainer, the position is the number of
        batches the training loop has processed (DataLoader prefetching runs ahead of it)."""
        if self.sampler is None:
            return {}
        state = self.sampler.state_dict()
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            progress = trainer.fit_loop.epoch_loop.batch_progress.current
            state["epoch"] = trainer.current_epoch
            state["position"] = int(progress.processed)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.sampler is not None:
            self.sampler.load_state_dict(state_dict)
        else:
            self._pending_state = state_dict


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
