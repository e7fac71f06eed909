"""Evaluator: texts to embed, and a pure `compute` from their embeddings to metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from st_lightning.encoders.sentence_encoder import check_texts

# Embeds texts (with an optional prompt) to a (len(texts), dim) float tensor.
EncodeFn = Callable[[Sequence[str], str | None], Tensor]


@dataclass
class TextGroup:
    """Texts an evaluator needs embedded, with the prompt role they play ("query"/"document")."""

    texts: list[str]
    prompt_name: str | None = None


class Evaluator:
    """Base class. Subclasses set `name`, list their `inputs()` and implement `compute()`.

    `compute` is a pure function of the embeddings (one tensor per input group, rows in the
    group's order), so it is tested with fixed tensors and runs identically on every rank.
    Metrics are plain floats keyed without the evaluator's name (`spearman_cosine`); the callback
    logs them as `val/<name>/<metric>`.
    """

    greater_is_better: ClassVar[bool] = True

    def __init__(self, name: str, truncate_dim: int | None = None, batch_size: int = 64) -> None:
        if not name or "/" in name:
            raise ValueError(f"Evaluator name must be non-empty without '/', got {name!r}.")
        self.name = name
        self.truncate_dim = truncate_dim
        self.batch_size = batch_size

    @property
    def primary_metric(self) -> str:
        raise NotImplementedError

    def inputs(self) -> dict[str, TextGroup]:
        raise NotImplementedError

    def compute(self, embeddings: Mapping[str, Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def evaluate(self, encode: EncodeFn | Any) -> dict[str, float]:
        """Embed the inputs (each distinct text once) and compute the metrics.

        `encode` is an `EncodeFn` or a `SentenceEncoder` (its `encode` is used).
        """
        return self.compute(embed_groups(self.inputs(), encode, self.batch_size, self.truncate_dim))


def encoder_fn(encoder: Any, batch_size: int) -> EncodeFn:
    def encode(texts: Sequence[str], prompt_name: str | None) -> Tensor:
        if prompt_name is not None and prompt_name not in encoder.prompts:
            prompt_name = None  # the model has no such prompt: encode the text as it is
        out = encoder.encode(
            list(texts), batch_size=batch_size, prompt_name=prompt_name, convert_to="tensor"
        )
        return out.float()

    return encode


def embed_groups(
    groups: Mapping[str, TextGroup],
    encode: EncodeFn | Any,
    batch_size: int,
    truncate_dim: int | None,
) -> dict[str, Tensor]:
    """Embed every group; texts shared between groups of the same prompt are embedded once."""
    fn = (
        encode
        if callable(encode) and not hasattr(encode, "encode")
        else encoder_fn(encode, batch_size)
    )
    by_prompt: dict[str | None, dict[str, int]] = {}
    for group in groups.values():
        check_texts(group.texts)
        index = by_prompt.setdefault(group.prompt_name, {})
        for t in group.texts:
            index.setdefault(t, len(index))
    embedded = {p: fn(list(index), p) for p, index in by_prompt.items()}
    out = {}
    for key, group in groups.items():
        index = by_prompt[group.prompt_name]
        rows = torch.tensor([index[t] for t in group.texts], dtype=torch.long)
        x = embedded[group.prompt_name][rows] if len(rows) else embedded[group.prompt_name][:0]
        out[key] = x[:, :truncate_dim] if truncate_dim else x
    return out


def check_same_length(name: str, **columns: Sequence[Any]) -> None:
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"Evaluator {name!r}: mismatched lengths {lengths}; they must be equal.")
    if not next(iter(lengths.values())):
        raise ValueError(f"Evaluator {name!r}: the evaluation set is empty.")
