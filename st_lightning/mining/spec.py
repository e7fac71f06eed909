"""`HardNegatives`: how to mine negatives for a dataset, as config (a `DatasetSpec`'s
`hard_negatives`, or `python -m st_lightning.mine`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from datasets import Dataset

log = logging.getLogger(__name__)


@dataclass
class HardNegatives:
    """Mine hard negatives for a dataset's (anchor, positive) rows with an embedding model.

    Args:
        model: the embedding model (a Hub id or a folder); the starting model of a run.
        corpus: where the corpus texts are (a file or folder a `DatasetSpec` loads), or None to
            mine among the dataset's positives.
        corpus_columns: the corpus columns joined (with a space) into one text, e.g.
            [title, text]; None takes the first column.
        corpus_split: the corpus split.
        corpus_name: the corpus subset.
        max_seq_length: the model's maximum length while mining (None keeps the model's).
        cross_encoder: a sentence-transformers CrossEncoder (id or folder) that rescores the
            candidates before the score filters.
        cache_folder: embeddings and mined datasets are kept here, keyed by model, prompts,
            maximum length, settings and data; None recomputes.
        device: where the model embeds: "auto" (a GPU if there is one), "cpu", "cuda"...
        The other fields are those of `st_lightning.mining.mine_hard_negatives`.
    """

    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    corpus: str | None = None
    corpus_columns: list[str] | None = None
    corpus_split: str = "train"
    corpus_name: str | None = None
    max_seq_length: int | None = None
    cross_encoder: str | None = None
    cache_folder: str | None = None
    device: str = "auto"
    anchor_column: str | None = None
    positive_column: str | None = None
    range_min: int = 0
    range_max: int | None = None
    max_score: float | None = None
    min_score: float | None = None
    absolute_margin: float | None = None
    relative_margin: float | None = None
    num_negatives: int = 3
    sampling_strategy: Literal["top", "random"] = "top"
    query_prompt_name: str | None = None
    query_prompt: str | None = None
    corpus_prompt_name: str | None = None
    corpus_prompt: str | None = None
    include_positives: bool = False
    output_format: Literal["triplet", "n-tuple", "labeled-pair", "labeled-list"] = "triplet"
    output_scores: bool = False
    batch_size: int = 64
    chunk_size: int = 1 << 24
    use_faiss: bool = False
    precision: Literal["float32", "bfloat16", "auto"] = "float32"
    seed: int = 0

    LOADING = ("model", "corpus", "corpus_columns", "corpus_split", "corpus_name",
               "max_seq_length", "cross_encoder", "cache_folder", "device")  # fmt: skip

    @classmethod
    def of(cls, value: HardNegatives | Mapping[str, Any]) -> HardNegatives:
        if isinstance(value, HardNegatives):
            return value
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in value if k not in fields]
        if unknown:
            raise ValueError(f"hard_negatives has no setting(s) {unknown}; it takes {fields}.")
        return cls(**{str(k): v for k, v in value.items()})

    def options(self) -> dict[str, Any]:
        """The keyword arguments of `mine_hard_negatives`."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.LOADING}

    def corpus_texts(self) -> list[str] | None:
        if self.corpus is None:
            return None
        from st_lightning.data.sources import DatasetSpec, load_source

        spec = DatasetSpec(path=self.corpus, name=self.corpus_name, split=self.corpus_split)
        rows = load_source(spec, "corpus")
        columns = self.corpus_columns or rows.column_names[:1]
        missing = [c for c in columns if c not in rows.column_names]
        if missing:
            raise ValueError(
                f"The corpus {self.corpus!r} has no column(s) {missing}; it has "
                f"{rows.column_names}. Set corpus_columns."
            )
        parts = [rows[c] for c in columns]
        return [" ".join(str(p or "") for p in row).strip() for row in zip(*parts, strict=True)]

    def mine(self, dataset: Dataset, *, show_progress: bool = True) -> tuple[Dataset, Any]:
        """(mined rows, MiningStats); reused from `cache_folder` when mined there before."""
        from st_lightning.mining.miner import MiningStats, check_settings, mine_hard_negatives

        corpus = self.corpus_texts()
        check_settings(dataset, corpus=corpus, cross_encoder=None, **self.options())
        cached = self._cache_path(dataset, corpus)
        if cached is not None and (cached / "mining.json").is_file():
            from st_lightning.mining.folder import load_mined

            log.info("Mined rows read from %s", cached)
            record = json.loads((cached / "mining.json").read_text())
            return load_mined(cached), MiningStats(**record["stats"])
        encoder = self.load_encoder()
        stats = MiningStats()
        mined = mine_hard_negatives(
            dataset,
            encoder,
            corpus=corpus,
            cross_encoder=self.load_cross_encoder(),
            cache_folder=self.cache_folder,
            show_progress=show_progress,
            stats=stats,
            **self.options(),
        )
        if cached is not None:
            from st_lightning.mining.embed import world
            from st_lightning.mining.folder import save_mined

            if world()[0] == 0:
                save_mined(mined, cached, settings=self.record(), stats=stats,
                           source="(cache)", model=self.model, overwrite=True)  # fmt: skip
        return mined, stats

    def load_encoder(self) -> Any:
        import torch

        from st_lightning.encoders import SentenceEncoder

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        encoder = SentenceEncoder.from_pretrained(self.model, max_seq_length=self.max_seq_length)
        return encoder.to(device)

    def load_cross_encoder(self) -> Any:
        if self.cross_encoder is None:
            return None
        from sentence_transformers import CrossEncoder

        return CrossEncoder(self.cross_encoder)

    def record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def _cache_path(self, dataset: Dataset, corpus: list[str] | None) -> Path | None:
        if self.cache_folder is None:
            return None
        from st_lightning.mining.embed import texts_digest

        h = hashlib.sha256(json.dumps(self.record(), sort_keys=True).encode())
        columns = [dataset[c] for c in dataset.column_names]
        h.update(texts_digest([repr(row) for row in zip(*columns, strict=True)]).encode())
        h.update(texts_digest(corpus or []).encode())
        h.update(_model_stamp(self.model).encode())
        return Path(self.cache_folder) / f"mined_{h.hexdigest()[:24]}"


def _model_stamp(model: str) -> str:
    """Which weights a model name means now: a folder's weight files (names, sizes, times);
    a Hub id as written (pin a revision by using a folder)."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return model
    files = sorted(p for p in path.rglob("*") if p.suffix in (".safetensors", ".bin"))
    return repr([(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in files])
