"""The loss contract: a loss maps column embeddings (and labels) to a scalar or named components."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

LabelKind = Literal["none", "score", "binary", "class", "teacher_embedding", "teacher_score"]

_LABEL_WORDS: dict[str, str] = {
    "none": "no label column",
    "score": "a float score column ('score' or 'label')",
    "binary": "a 0/1 label column",
    "class": "an integer class-id label column",
    "teacher_embedding": "a label column of teacher embeddings (one vector per row)",
    "teacher_score": "a label column of teacher scores (one float, or one per candidate)",
}

LossOutput = Tensor | dict[str, Tensor]


class EmbeddingLoss(nn.Module):
    """Base class of every loss.

    A loss never holds the encoder: `forward(embeddings, labels)` takes one (batch, dim) tensor
    per input column, in column order, and the labels (or None). It returns a scalar, or a dict of
    named components whose sum is the loss (each is logged).

    Subclasses declare which datasets they accept, so a mismatch fails before training:
    `min_inputs`/`max_inputs` (None = no upper bound) and the `label` kind they need.
    """

    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[int | None] = 2
    label: ClassVar[LabelKind] = "none"
    citation: ClassVar[str] = ""
    # Losses that need a guide model's embeddings of the batch (passed as `guide_embeddings`).
    needs_guide: ClassVar[bool] = False
    # Losses that need embeddings pooled from every layer (passed as `layer_embeddings`).
    needs_layers: ClassVar[bool] = False

    def forward(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> LossOutput:
        raise NotImplementedError

    # ---- what the data module asks before training ----------------------------------------------
    def accepted_inputs(self) -> tuple[int, int | None]:
        return self.min_inputs, self.max_inputs

    def label_kind(self) -> LabelKind:
        return self.label

    def check_embedding_dimension(self, dim: int) -> None:
        """Fail when the loss cannot work on embeddings of width `dim` (checked at setup)."""

    def describe_inputs(self) -> str:
        low, high = self.accepted_inputs()
        if high == low:
            count = f"{low} input column{'s' if low > 1 else ''}"
        elif high is None:
            count = f"{low} or more input columns"
        else:
            count = f"{low} to {high} input columns"
        return f"{count} and {_LABEL_WORDS[self.label_kind()]}"

    def check_columns(self, dataset: str, inputs: Sequence[str], label: str | None) -> None:
        """Fail when a dataset's columns cannot feed this loss, naming what to change."""
        low, high = self.accepted_inputs()
        n = len(inputs)
        wants_label = self.label_kind() != "none"
        problem = None
        if n < low or (high is not None and n > high):
            problem = f"it has {n} input column{'s' if n != 1 else ''}"
        elif wants_label and label is None:
            problem = "it has no label column (name it 'label' or 'score')"
        elif not wants_label and label is not None:
            problem = f"it has a label column {label!r} this loss does not use"
        if problem:
            raise ValueError(
                f"Dataset {dataset!r} with input columns {list(inputs)}"
                f"{f' and label column {label!r}' if label else ''} does not fit "
                f"{type(self).__name__}: {problem}, but the loss expects {self.describe_inputs()}. "
                "Select, reorder or drop columns, or pick another loss."
            )

    def check_labels(self, dataset: str, labels: Tensor) -> None:
        """Fail when label values are of the wrong kind for this loss (e.g. floats for classes)."""
        kind = self.label_kind()
        bad = None
        if (
            kind in ("score", "teacher_score", "teacher_embedding")
            and not labels.is_floating_point()
        ):
            bad = (
                f"integer labels ({labels.dtype}) where float {kind.replace('_', ' ')}s are needed"
            )
        elif (
            kind in ("score", "teacher_score", "teacher_embedding")
            and not torch.isfinite(labels).all()
        ):
            bad = "NaN or infinite values"
        elif kind == "class" and (
            labels.is_floating_point()
            and not torch.equal(labels, labels.round())
            or (labels < 0).any()
        ):
            bad = "labels that are not non-negative integer class ids"
        elif (
            kind == "binary"
            and not torch.isin(labels, torch.tensor([0, 1], dtype=labels.dtype)).all()
        ):
            bad = "labels other than 0 and 1"
        elif kind == "teacher_embedding" and labels.dim() != 2:
            bad = f"labels of shape {tuple(labels.shape)}, not (rows, dim) teacher embeddings,"
        if bad:
            raise ValueError(
                f"Dataset {dataset!r} has {bad} for {type(self).__name__}, which expects "
                f"{_LABEL_WORDS[kind]}."
            )

    # ---- model card ------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The constructor arguments, as plain data (for the model card and logs)."""
        out: dict[str, Any] = {}
        for name in inspect.signature(type(self).__init__).parameters:
            if name == "self" or not hasattr(self, name):
                continue
            value = getattr(self, name)
            if isinstance(value, EmbeddingLoss):
                out[name] = {"class": type(value).__name__, **value.config()}
            elif isinstance(value, str | int | float | bool | type(None)):
                out[name] = value
            elif isinstance(value, list | tuple):
                out[name] = list(value)
        return out


class WrapperLoss(EmbeddingLoss):
    """A loss around another loss (`self.loss`): it accepts what the wrapped loss accepts."""

    loss: EmbeddingLoss

    def accepted_inputs(self) -> tuple[int, int | None]:
        return self.loss.accepted_inputs()

    def label_kind(self) -> LabelKind:
        return self.loss.label_kind()

    def check_embedding_dimension(self, dim: int) -> None:
        self.loss.check_embedding_dimension(dim)
