"""Data: sources, column rules, tokenization, samplers and the data module."""

from st_lightning.data.collate import Batch
from st_lightning.data.columns import LABEL_COLUMNS, ColumnRoles, column_roles
from st_lightning.data.datamodule import EmbeddingDataModule
from st_lightning.data.multi import (
    MultiDatasetSampler,
    ProportionalSampler,
    RoundRobinSampler,
    WeightedSampler,
)
from st_lightning.data.samplers import (
    BatchSampler,
    GroupByLabelBatchSampler,
    NoDuplicatesBatchSampler,
)
from st_lightning.data.sources import DatasetSpec, load_source

__all__ = [
    "LABEL_COLUMNS",
    "Batch",
    "BatchSampler",
    "ColumnRoles",
    "DatasetSpec",
    "EmbeddingDataModule",
    "GroupByLabelBatchSampler",
    "MultiDatasetSampler",
    "NoDuplicatesBatchSampler",
    "ProportionalSampler",
    "RoundRobinSampler",
    "WeightedSampler",
    "column_roles",
    "load_source",
]
