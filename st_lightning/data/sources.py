"""Where a named dataset comes from: the Hub, local files or folders, or memory."""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, IterableDataset, load_dataset, load_dataset_builder

from st_lightning.encoders.hub import hub_offline
from st_lightning.mining.spec import HardNegatives

log = logging.getLogger(__name__)

_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip")

_BUILDERS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
    ".arrow": "arrow",
}


@dataclass
class DatasetSpec:
    """One dataset: where it is and which columns, in which order, feed the loss.

    Args:
        path: a Hub id (`sentence-transformers/all-nli`), a local folder laid out like one
            (`data/all-nli`), or a local csv / tsv / json / jsonl / parquet / arrow file.
        name: the subset (`triplet`); None for the default.
        split: a split, slicing allowed (`train[:10000]`, `train[10%:]`).
        columns: the columns to keep, in this order (None keeps all, in the file's order).
        rename: old name -> new name, applied before `columns`.
        remove_columns: columns to drop.
        max_samples: keep the first this many rows (after shuffling, if asked).
        shuffle: shuffle the rows once, with `seed`, before `max_samples`.
        seed: the shuffle seed.
        load_kwargs: passed on to `datasets.load_dataset` (e.g. `revision`, `delimiter`).
        teacher: a model id/folder whose embeddings of the first column become the `label`
            column (for MSELoss distillation); computed once when the data is set up.
        hard_negatives: mine negatives for the (anchor, positive) rows when the data is set up
            (`st_lightning.mining.HardNegatives`: model, corpus, num_negatives, margins...);
            the mined rows replace the rows.
        streaming: read the rows while training instead of loading them into memory
            (`st_lightning.data.streaming`); `path` may then also be a glob of shards
            (`shards/*.parquet`). Needs `trainer.max_steps`.
        num_rows: the number of rows of a streamed dataset, where mixing by size needs it and
            neither the dataset's info nor parquet metadata tells it.
    """

    path: str
    name: str | None = None
    split: str = "train"
    columns: list[str] | None = None
    rename: dict[str, str] = field(default_factory=dict)
    remove_columns: list[str] = field(default_factory=list)
    max_samples: int | None = None
    shuffle: bool = False
    seed: int = 0
    load_kwargs: dict[str, Any] = field(default_factory=dict)
    teacher: str | None = None
    teacher_batch_size: int = 64
    hard_negatives: HardNegatives | None = None
    streaming: bool = False
    num_rows: int | None = None


def file_suffix(path: Path) -> str:
    """The data format suffix of a file, under a compression suffix (`.jsonl.gz` -> `.jsonl`)."""
    suffixes = [x.lower() for x in path.suffixes]
    if len(suffixes) > 1 and suffixes[-1] in _COMPRESSED:
        return suffixes[-2]
    return suffixes[-1] if suffixes else ""


def _load(spec: DatasetSpec, dataset: str) -> Dataset:
    path = Path(spec.path).expanduser()
    kwargs = dict(spec.load_kwargs)
    suffix = file_suffix(path)
    if suffix in _BUILDERS:
        if not path.is_file():
            raise FileNotFoundError(f"Dataset {dataset!r}: file {str(path)!r} does not exist.")
        if suffix == ".tsv":
            kwargs.setdefault("delimiter", "\t")
        base_split = spec.split.split("[", 1)[0]  # slicing such as train[:100] works on files too
        builder = _BUILDERS[suffix]
        return load_dataset(builder, data_files={base_split: str(path)}, split=spec.split, **kwargs)
    if path.is_dir() or str(spec.path).startswith((".", "/", "~")):
        if not path.is_dir():
            raise FileNotFoundError(f"Dataset {dataset!r}: folder {str(path)!r} does not exist.")
        return load_dataset(str(path), spec.name, split=spec.split, **kwargs)
    offline = hub_offline() or os.environ.get("HF_DATASETS_OFFLINE", "0").lower() in ("1", "true")
    try:
        return load_dataset(spec.path, spec.name, split=spec.split, **kwargs)
    except Exception as err:  # noqa: BLE001 - datasets raises many kinds; all end here
        where = "offline (HF_HUB_OFFLINE=1) and not in the cache" if offline else str(err)
        raise FileNotFoundError(
            f"Dataset {dataset!r}: cannot load {spec.path!r} (subset {spec.name!r}, split "
            f"{spec.split!r}): {where}. Use a local path (e.g. data/all-nli) or run once online."
        ) from err


def as_spec(spec: DatasetSpec | Dataset | Mapping[str, Any], dataset: str) -> DatasetSpec | Dataset:
    """A `DatasetSpec` from its fields (as configs give them), or the in-memory dataset."""
    if isinstance(spec, DatasetDict):
        raise TypeError(
            f"Dataset {dataset!r} is a DatasetDict; pass one split (e.g. dataset_dict['train'])."
        )
    if isinstance(spec, Mapping):  # the fields of a DatasetSpec
        spec = DatasetSpec(**{str(k): v for k, v in spec.items() if k != "_target_"})
    return spec


def is_streaming(spec: DatasetSpec | Dataset | Mapping[str, Any]) -> bool:
    if isinstance(spec, Mapping):
        return bool(spec.get("streaming", False))
    return bool(getattr(spec, "streaming", False))


def load_source(spec: DatasetSpec | Dataset | Mapping[str, Any], dataset: str) -> Dataset:
    """The rows of one named dataset, with its column selection applied."""
    spec = as_spec(spec, dataset)
    if isinstance(spec, DatasetSpec) and spec.streaming:
        spec = replace(spec, streaming=False)  # evaluation data: small, loaded whole
    ds = spec if isinstance(spec, Dataset) else _load(spec, dataset)
    if isinstance(spec, DatasetSpec):
        if spec.rename:
            ds = ds.rename_columns(spec.rename)
        if spec.remove_columns:
            ds = ds.remove_columns(spec.remove_columns)
        if spec.columns is not None:
            missing = [c for c in spec.columns if c not in ds.column_names]
            if missing:
                raise ValueError(
                    f"Dataset {dataset!r} has no column(s) {missing}; it has {ds.column_names}."
                )
            ds = ds.select_columns(spec.columns)
        if spec.shuffle:
            ds = ds.shuffle(seed=spec.seed)
        if spec.max_samples is not None:
            ds = ds.select(range(min(spec.max_samples, len(ds))))
    if len(ds) == 0:
        raise ValueError(f"Dataset {dataset!r} is empty; check its path, split and filters.")
    if isinstance(spec, DatasetSpec) and spec.teacher:
        ds = add_teacher_embeddings(ds, spec.teacher, spec.teacher_batch_size, dataset)
    if isinstance(spec, DatasetSpec) and spec.hard_negatives is not None:
        log.info("Dataset %r: mining hard negatives", dataset)
        ds, _ = HardNegatives.of(spec.hard_negatives).mine(ds)
    return ds


def add_teacher_embeddings(ds: Dataset, teacher: str, batch_size: int, dataset: str) -> Dataset:
    """The teacher's embeddings of the first column, as the `label` column."""
    from st_lightning.encoders import SentenceEncoder

    if "label" in ds.column_names:
        raise ValueError(
            f"Dataset {dataset!r} already has a label column; drop it to add a teacher's."
        )
    model = SentenceEncoder.from_pretrained(teacher)
    embeddings = model.encode(ds[ds.column_names[0]], batch_size=batch_size)
    return ds.add_column("label", embeddings.tolist())


def open_stream(
    spec: DatasetSpec | Dataset | Mapping[str, Any], dataset: str
) -> tuple[IterableDataset, int | None, str]:
    """A named dataset as the `datasets` library's iterable dataset, its column selection and
    `max_samples` applied; with its number of rows where known, and where it comes from.
    An in-memory dataset streams from memory (when mixed with streamed ones)."""
    spec = as_spec(spec, dataset)
    if isinstance(spec, Dataset):
        return spec.to_iterable_dataset(num_shards=min(len(spec), 64)), len(spec), "in-memory"
    if spec.teacher or spec.hard_negatives is not None:
        raise ValueError(
            f"Dataset {dataset!r}: teacher embeddings and mined negatives are computed over "
            "the whole dataset, which streaming never holds; compute them once (python -m "
            "st_lightning.mine) into shards, and stream those."
        )
    if "[" in spec.split:
        raise ValueError(
            f"Dataset {dataset!r}: split {spec.split!r} slices rows, which a stream cannot; "
            "use the plain split and max_samples."
        )
    ds, rows = _open(spec, dataset)
    if spec.rename:
        ds = ds.rename_columns(spec.rename)
    if spec.remove_columns:
        ds = ds.remove_columns(spec.remove_columns)
    if spec.columns is not None:
        ds = ds.select_columns(spec.columns)
    if spec.num_rows is not None:
        rows = spec.num_rows
    if spec.max_samples is not None:
        ds = ds.take(spec.max_samples)
        rows = spec.max_samples if rows is None else min(rows, spec.max_samples)
    return ds, rows, spec.path


def _open(spec: DatasetSpec, dataset: str) -> tuple[IterableDataset, int | None]:
    path = Path(spec.path).expanduser()
    kwargs = dict(spec.load_kwargs)
    if "data_files" in kwargs and not kwargs["data_files"]:
        raise ValueError(f"Dataset {dataset!r}: data_files is empty; list the shards to stream.")
    if any(ch in spec.path for ch in "*?["):  # a glob of shards
        files = sorted(glob.glob(str(path), recursive=True))
        if not files:
            raise FileNotFoundError(
                f"Dataset {dataset!r}: no file matches {spec.path!r}; the shard list is empty."
            )
        return _stream_files(files, spec, kwargs, dataset)
    if file_suffix(path) in _BUILDERS:
        if not path.is_file():
            raise FileNotFoundError(f"Dataset {dataset!r}: file {str(path)!r} does not exist.")
        return _stream_files([str(path)], spec, kwargs, dataset)
    local = path.is_dir() or str(spec.path).startswith((".", "/", "~"))
    if local and not path.is_dir():
        raise FileNotFoundError(f"Dataset {dataset!r}: folder {str(path)!r} does not exist.")
    where = str(path) if local else spec.path
    try:
        builder = load_dataset_builder(where, spec.name, **kwargs)
        split_files: Any = (builder.config.data_files or {}).get(spec.split)
        if split_files is not None and len(split_files) == 0:
            raise ValueError("its split has no data files")
        ds = load_dataset(where, spec.name, split=spec.split, streaming=True, **kwargs)
    except Exception as err:  # noqa: BLE001 - datasets raises many kinds; all end here
        offline = hub_offline() or os.environ.get("HF_DATASETS_OFFLINE", "0").lower() in (
            "1",
            "true",
        )
        reason = (
            "offline (HF_HUB_OFFLINE=1) and not in the cache" if offline and not local else str(err)
        )
        raise FileNotFoundError(
            f"Dataset {dataset!r}: cannot stream {spec.path!r} (subset {spec.name!r}, split "
            f"{spec.split!r}): {reason}."
        ) from err
    splits = builder.info.splits or {}
    rows = splits[spec.split].num_examples if spec.split in splits else None
    if not rows and split_files:
        rows = _counted_rows([str(f) for f in split_files])
    return ds, rows or None


def _stream_files(
    files: list[str], spec: DatasetSpec, kwargs: dict[str, Any], dataset: str
) -> tuple[IterableDataset, int | None]:
    suffixes = {file_suffix(Path(f)) for f in files}
    builders = {_BUILDERS.get(s) for s in suffixes}
    if len(builders) != 1 or None in builders:
        raise ValueError(
            f"Dataset {dataset!r}: the shards must share one format of "
            f"{sorted(_BUILDERS)}; found {sorted(suffixes)}."
        )
    if suffixes == {".tsv"}:
        kwargs.setdefault("delimiter", "\t")
    base_split = spec.split
    ds = load_dataset(
        builders.pop(), data_files={base_split: files}, split=base_split, streaming=True, **kwargs
    )
    return ds, _counted_rows(files)


def _counted_rows(files: list[str]) -> int | None:
    """Rows in local parquet shards (from their metadata, no data read) or uncompressed jsonl
    shards (their lines); None for other formats and remote files."""
    if any(f.startswith(("hf://", "http://", "https://")) for f in files):
        return None
    suffixes = {(file_suffix(Path(f)), Path(f).suffix.lower()) for f in files}
    if all(s == ".parquet" for s, _ in suffixes):
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    if all(s == ".jsonl" == last for s, last in suffixes):
        return sum(_lines(f) for f in files)
    return None


def _lines(path: str) -> int:
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")
