"""The model card (README.md) written into every exported model folder."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from st_lightning.encoders import SentenceEncoder
from st_lightning.losses.citations import SBERT


@dataclass
class DatasetInfo:
    """What the card says about one training dataset."""

    name: str
    source: str
    rows: int
    columns: list[str]
    label: str | None
    examples: list[dict[str, Any]] = field(default_factory=list)
    token_lengths: dict[str, dict[str, float]] = field(default_factory=dict)
    loss: str = ""
    loss_config: dict[str, Any] = field(default_factory=dict)


def _is_hub_id(source: str) -> bool:
    from pathlib import Path

    local = source.startswith((".", "/")) or Path(source).exists()
    return source.count("/") == 1 and not local


def token_stats(lengths: Sequence[int]) -> dict[str, float]:
    a = np.asarray(lengths)
    return {"min": int(a.min()), "mean": round(float(a.mean()), 2), "max": int(a.max())}


def _table(rows: list[list[Any]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def model_card(
    encoder: SentenceEncoder,
    *,
    model_name: str,
    base_model: str | None,
    datasets: Sequence[DatasetInfo] = (),
    evaluations: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    primary_metrics: Mapping[str, str] | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    training_log: Sequence[Mapping[str, Any]] = (),
    citations: Mapping[str, str] | None = None,
    language: str | None = "en",
) -> str:
    """A card with the sections users of sentence-transformers expect.

    `evaluations`: evaluator -> {"before": metrics, "after": metrics}.
    """
    import lightning
    import torch
    import transformers

    import st_lightning

    evaluations = evaluations or {}
    tags = ["sentence-transformers", "sentence-similarity", "feature-extraction", "st_lightning"]
    tags += [f"loss:{d.loss}" for d in datasets if d.loss]
    header = {
        "library_name": "sentence-transformers",
        "pipeline_tag": "sentence-similarity",
        "tags": sorted(set(tags)),
        **({"base_model": base_model} if base_model else {}),
        **({"language": [language]} if language else {}),
        # Hub ids only: local folders and files mean nothing on the Hub.
        "datasets": sorted({d.source for d in datasets if _is_hub_id(d.source)}),
    }
    yaml_lines = ["---"]
    for key, value in header.items():
        if isinstance(value, list):
            yaml_lines.append(f"{key}:")
            yaml_lines += [f"- {json.dumps(v)}" for v in value]
        else:
            yaml_lines.append(f"{key}: {json.dumps(value)}")
    # Hub model-index: the final metrics, so the Hub shows them.
    if evaluations:
        yaml_lines += ["model-index:", f"- name: {json.dumps(model_name)}", "  results:"]
        for name, stages in evaluations.items():
            after = stages.get("after") or next(iter(stages.values()))
            yaml_lines += [
                "  - task:",
                "      type: sentence-similarity",
                f"    dataset:\n      name: {json.dumps(name)}\n      type: {json.dumps(name)}",
                "    metrics:",
            ]
            for metric, value in after.items():
                yaml_lines += [
                    f"    - type: {json.dumps(metric)}",
                    f"      value: {float(value):.6g}",
                ]
    yaml_lines.append("---")

    modes = ", ".join(encoder.pooling.modes)
    arch = type(encoder.transformer).__name__
    parts = [
        "\n".join(yaml_lines),
        f"# {model_name}",
        f"A sentence-embedding model trained with st_lightning"
        f"{f' from [{base_model}](https://huggingface.co/{base_model})' if base_model else ''}. "
        f"It maps text to a {encoder.embedding_dimension}-dimensional vector for semantic "
        "search, similarity, clustering and classification.",
        "## Model details",
        _table(
            [
                ["Base model", base_model or "-"],
                ["Maximum sequence length", f"{encoder.max_seq_length} tokens"],
                ["Output dimension", encoder.embedding_dimension],
                ["Similarity function", encoder.similarity_fn_name],
                ["Pooling", modes],
                ["Normalized", encoder.normalize],
                ["Training datasets", ", ".join(d.name for d in datasets) or "-"],
            ],
            ["", ""],
        ),
        "### Architecture\n\n```\n"
        f"Transformer ({arch}, max_seq_length={encoder.max_seq_length})\n"
        f"Pooling ({modes}, dimension {encoder.pooling.output_dimension})\n"
        + "".join(f"Dense ({d.config()})\n" for d in encoder.dense_layers)
        + ("Normalize\n" if encoder.normalize else "")
        + "```",
        "## Usage\n\n```bash\npip install -U sentence-transformers\n```\n\n```python\n"
        "from sentence_transformers import SentenceTransformer\n\n"
        f'model = SentenceTransformer("{model_name}")\n'
        "sentences = [\n"
        '    "The weather is lovely today.",\n'
        '    "It is sunny outside.",\n'
        '    "He drove to the stadium.",\n'
        "]\n"
        "embeddings = model.encode(sentences)\n"
        f"print(embeddings.shape)  # (3, {encoder.embedding_dimension})\n"
        "similarities = model.similarity(embeddings, embeddings)\n```",
    ]
    if encoder.prompts:
        parts.append("Prompts: " + ", ".join(f"`{k}`: {v!r}" for k, v in encoder.prompts.items()))
    if evaluations:
        section = ["## Evaluation"]
        for name, stages in evaluations.items():
            metrics = sorted({m for s in stages.values() for m in s})
            names = list(stages)
            primary = (primary_metrics or {}).get(name)
            rows = [
                [f"**{m}**" if m == primary else m, *[_fmt(stages[s].get(m, "-")) for s in names]]
                for m in metrics
            ]
            section.append(f"### {name}\n\n" + _table(rows, ["Metric", *names]))
        parts.append("\n\n".join(section))
    if datasets:
        section = ["## Training details", "### Training datasets"]
        for d in datasets:
            lines = [
                f"#### {d.name}",
                f"- Source: `{d.source}`",
                f"- Size: {d.rows} training samples",
                f"- Columns: {', '.join(f'`{c}`' for c in d.columns)}"
                + (f" (label: `{d.label}`)" if d.label else ""),
                f"- Loss: `{d.loss}` with `{json.dumps(d.loss_config)}`",
            ]
            if d.token_lengths:
                lines.append(
                    "\n"
                    + _table(
                        [[c, s["min"], s["mean"], s["max"]] for c, s in d.token_lengths.items()],
                        ["column", "min tokens", "mean tokens", "max tokens"],
                    )
                )
            if d.examples:
                cols = list(d.examples[0])
                lines.append(
                    "\nExamples:\n\n"
                    + _table(
                        [[str(e[c])[:120].replace("|", "\\|") for c in cols] for e in d.examples],
                        cols,
                    )
                )
            section.append("\n".join(lines))
        parts.append("\n\n".join(section))
    if hyperparameters:
        parts.append(
            "### Training hyperparameters\n\n"
            + "\n".join(
                f"- `{k}`: `{json.dumps(v, default=str)}`" for k, v in hyperparameters.items()
            )
        )
    if training_log:
        cols = list(training_log[0])
        parts.append(
            "### Training logs\n\n"
            + _table([[_fmt(r.get(c, "")) for c in cols] for r in training_log], cols)
        )
    parts.append(
        "### Framework versions\n\n"
        + "\n".join(
            [
                f"- Python: {platform.python_version()}",
                f"- st_lightning: {st_lightning.__version__}",
                f"- Lightning: {lightning.__version__}",
                f"- Transformers: {transformers.__version__}",
                f"- PyTorch: {torch.__version__}",
            ]
        )
    )
    cites = dict(citations or {})
    cites.setdefault("Sentence-BERT", SBERT)
    parts.append(
        "## Citation\n\n"
        + "\n\n".join(f"#### {k}\n\n```bibtex\n{v}\n```" for k, v in cites.items())
    )
    return "\n\n".join(parts) + "\n"
