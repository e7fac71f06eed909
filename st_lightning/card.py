"""The model card (README.md) written into every exported model folder.

`CardData` holds what a run knows (read from the built objects by `st_lightning.export_run`);
`model_card` renders it: a YAML header the Hub reads (validated by `yaml.safe_load` in the
tests, with the keys sentence-transformers writes for the same run) and the sections users of
sentence-transformers expect, from the model's details to the training log and citations.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import yaml

from st_lightning.encoders import SentenceEncoder
from st_lightning.encoders.hub import is_hub_id
from st_lightning.losses.citations import SBERT

# Hub task of each evaluator's metrics (model-index `task.type`, with its display name).
TASKS = {
    "EmbeddingSimilarityEvaluator": ("semantic-similarity", "Semantic Similarity"),
    "InformationRetrievalEvaluator": ("information-retrieval", "Information Retrieval"),
    "TripletEvaluator": ("triplet", "Triplet"),
    "BinaryClassificationEvaluator": ("binary-classification", "Binary Classification"),
    "ParaphraseMiningEvaluator": ("paraphrase-mining", "Paraphrase Mining"),
    "RerankingEvaluator": ("reranking", "Reranking"),
    "TranslationEvaluator": ("translation", "Translation"),
    "MSEEvaluator": ("knowledge-distillation", "Knowledge Distillation"),
    "LabelAccuracyEvaluator": ("classification", "Classification"),
}


@dataclass
class DatasetInfo:
    """What the card says about one training or evaluation dataset."""

    name: str
    source: str
    rows: int | None  # None: a streamed dataset of unknown size
    columns: list[str]
    label: str | None
    examples: list[dict[str, Any]] = field(default_factory=list)
    token_lengths: dict[str, dict[str, float]] = field(default_factory=dict)
    loss: str = ""
    loss_config: dict[str, Any] = field(default_factory=dict)
    streamed: bool = False
    sampled: int = 0  # rows behind the token statistics


@dataclass
class EvaluationInfo:
    """One evaluator's results: stage ("before", "after", ...) -> metrics."""

    name: str
    kind: str  # the evaluator's class name
    stages: dict[str, dict[str, float]]
    primary: str | None = None


@dataclass
class CardData:
    """Everything the card shows besides the encoder itself."""

    model_name: str
    load_path: str  # what the usage snippet loads: the folder, or the Hub repo it was pushed to
    base_model: str | None = None
    language: str | list[str] | None = "en"
    license: str | None = None
    datasets: list[DatasetInfo] = field(default_factory=list)
    eval_datasets: list[DatasetInfo] = field(default_factory=list)
    evaluations: list[EvaluationInfo] = field(default_factory=list)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    # Rows of epoch, step, training loss and evaluation values (column -> value).
    training_log: list[dict[str, Any]] = field(default_factory=list)
    # Seconds: "training", "evaluation", "total".
    training_time: dict[str, float] = field(default_factory=dict)
    hardware: dict[str, str] = field(default_factory=dict)
    emissions: dict[str, Any] | None = None  # CodeCarbon's figures, when it ran
    citations: dict[str, str] = field(default_factory=dict)
    widget: list[dict[str, Any]] = field(default_factory=list)
    # The usage snippet's sentences and their similarity matrix under this model.
    usage_sentences: list[str] = field(default_factory=list)
    usage_similarities: list[list[float]] = field(default_factory=list)


def token_stats(lengths: Sequence[int]) -> dict[str, float]:
    a = np.asarray(lengths)
    return {"min": int(a.min()), "mean": round(float(a.mean()), 2), "max": int(a.max())}


def _table(rows: list[list[Any]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + ":---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _cell(text: Any, limit: int = 160) -> str:
    s = str(text)
    s = s if len(s) <= limit else s[: limit - 1] + "…"
    return s.replace("|", "\\|").replace("\n", " ")


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2f} seconds"
    if seconds < 120:
        return f"{seconds:.1f} seconds"
    if seconds < 7200:
        return f"{seconds / 60:.1f} minutes"
    return f"{seconds / 3600:.2f} hours"


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def header(encoder: SentenceEncoder, card: CardData) -> dict[str, Any]:
    """The YAML header: the keys the Hub and sentence-transformers' cards use."""
    tags = ["sentence-transformers", "sentence-similarity", "feature-extraction", "st_lightning"]
    sizes = [d.rows for d in card.datasets]
    tags += [f"dataset_size:{sum(sizes)}"] if sizes and None not in sizes else []  # type: ignore[arg-type]
    tags += sorted({f"loss:{d.loss}" for d in card.datasets if d.loss})
    out: dict[str, Any] = {}
    if card.language:
        out["language"] = [card.language] if isinstance(card.language, str) else card.language
    if card.license:
        out["license"] = card.license
    out["tags"] = tags
    if card.base_model:
        out["base_model"] = card.base_model
    if card.widget:
        out["widget"] = card.widget
    out["pipeline_tag"] = "sentence-similarity"
    out["library_name"] = "sentence-transformers"
    hub_datasets = sorted({d.source for d in card.datasets if is_hub_id(d.source)})
    if hub_datasets:  # local folders and files mean nothing on the Hub
        out["datasets"] = hub_datasets
    if card.emissions:
        out["co2_eq_emissions"] = card.emissions
    final = [(e, e.stages.get("after") or list(e.stages.values())[-1]) for e in card.evaluations]
    final = [(e, m) for e, m in final if m]
    if final:
        out["metrics"] = list(dict.fromkeys(k for _, m in final for k in m))
        results = []
        for evaluation, metrics in final:
            task, task_name = TASKS.get(evaluation.kind, ("sentence-similarity", "Similarity"))
            results.append(
                {
                    "task": {"type": task, "name": task_name},
                    "dataset": {"name": evaluation.name.replace("_", " "), "type": evaluation.name},
                    "metrics": [
                        {"type": k, "value": float(v), "name": k.replace("_", " ").title()}
                        for k, v in metrics.items()
                    ],
                }
            )
        out["model-index"] = [{"name": card.model_name, "results": results}]
    return out


def _dataset_section(d: DatasetInfo, kind: str) -> str:
    lines = [
        f"#### {d.name}",
        "",
        f"* Source: `{d.source}`",
        f"* Size: {'unknown' if d.rows is None else d.rows} {kind} samples"
        + (" (streamed while training)" if d.streamed else ""),
        "* Columns: "
        + ", ".join(f"`{c}`" for c in d.columns)
        + (f" and the label `{d.label}`" if d.label else ""),
    ]
    if d.token_lengths:
        lines += [
            f"* Token statistics of the first {d.sampled} samples:",
            "",
            _table(
                [[c, s["min"], s["mean"], s["max"]] for c, s in d.token_lengths.items()],
                ["column", "min tokens", "mean tokens", "max tokens"],
            ),
        ]
    if d.examples:
        cols = list(d.examples[0])
        lines += [
            "",
            "* Samples:",
            "",
            _table([[_cell(e[c]) for c in cols] for e in d.examples], cols),
        ]
    if d.loss:
        lines += [
            "",
            f"* Loss: `{d.loss}` with these parameters:",
            "",
            "```json\n" + json.dumps(d.loss_config, indent=4, default=str) + "\n```",
        ]
    return "\n".join(lines)


def _usage(encoder: SentenceEncoder, card: CardData) -> str:
    sentences = card.usage_sentences or [
        "The weather is lovely today.",
        "It is sunny outside.",
        "He drove to the stadium.",
    ]
    lines = [
        "## Usage",
        "",
        "Install sentence-transformers and load the model folder"
        + (" (or its Hub repository)" if is_hub_id(card.load_path) else "")
        + ":",
        "",
        "```bash\npip install -U sentence-transformers\n```",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        f"model = SentenceTransformer({json.dumps(card.load_path)})",
        "sentences = [",
        *[f"    {json.dumps(s, ensure_ascii=False)}," for s in sentences],
        "]",
        "embeddings = model.encode(sentences)",
        "print(embeddings.shape)",
        f"# [{len(sentences)}, {encoder.embedding_dimension}]",
        "similarities = model.similarity(embeddings, embeddings)",
        "print(similarities)",
    ]
    if card.usage_similarities:
        rows = [", ".join(f"{v:.4f}" for v in row) for row in card.usage_similarities]
        lines += [f"# [[{rows[0]}],"] + [f"#  [{r}]," for r in rows[1:-1]] + [f"#  [{rows[-1]}]]"]
    lines.append("```")
    if encoder.prompts:
        lines += [
            "",
            "The model has prompts, chosen with `model.encode(texts, prompt_name=...)`: "
            + ", ".join(f"`{k}`: {v!r}" for k, v in encoder.prompts.items())
            + ".",
        ]
    return "\n".join(lines)


def model_card(encoder: SentenceEncoder, card: CardData) -> str:
    """The card's markdown, YAML header first."""
    import lightning
    import torch
    import transformers

    import st_lightning

    head = yaml.safe_dump(header(encoder, card), sort_keys=False, allow_unicode=True, width=100)
    from st_lightning.encoders.adapters import base_model, is_adapted

    modes = ", ".join(encoder.pooling.modes)
    arch = type(base_model(encoder.transformer)).__name__
    arch += " with LoRA adapters" if is_adapted(encoder.transformer) else ""
    base = (
        f" from [{card.base_model}](https://huggingface.co/{card.base_model})"
        if card.base_model and is_hub_id(card.base_model)
        else (f" from `{card.base_model}`" if card.base_model else "")
    )
    trained_on = ", ".join(d.name for d in card.datasets)
    details: list[list[Any]] = [
        ["Model type", "Sentence Transformer"],
        ["Base model", card.base_model or "-"],
        ["Maximum sequence length", f"{encoder.max_seq_length} tokens"],
        ["Output dimension", f"{encoder.embedding_dimension} dimensions"],
        ["Similarity function", encoder.similarity_fn_name],
        ["Pooling", modes],
        ["Normalized", encoder.normalize],
        ["Training datasets", trained_on or "-"],
        ["Language", ", ".join(head_lang(card)) or "-"],
        ["License", card.license or "-"],
    ]
    parts = [
        f"---\n{head}---",
        f"# {card.model_name}",
        f"A [sentence-transformers](https://www.sbert.net) model trained with st_lightning{base}"
        + (f" on {trained_on}" if trained_on else "")
        + f". It maps text to a {encoder.embedding_dimension}-dimensional vector for semantic "
        "search, similarity, paraphrase mining, clustering and classification.",
        "## Model details\n\n" + _table(details, ["", ""]),
        "### Full model architecture\n\n```\n"
        f"Transformer ({arch}, max_seq_length={encoder.max_seq_length})\n"
        f"Pooling ({modes}, dimension {encoder.pooling.output_dimension})\n"
        + "".join(f"Dense ({d.config()})\n" for d in encoder.dense_layers)
        + ("Normalize\n" if encoder.normalize else "")
        + "```",
        _usage(encoder, card),
    ]
    if card.evaluations:
        section = ["## Evaluation"]
        for e in card.evaluations:
            metrics = list(dict.fromkeys(m for s in e.stages.values() for m in s))
            stages = list(e.stages)
            rows = [
                [
                    f"**{m}**" if m == e.primary else m,
                    *[_fmt(e.stages[s].get(m, "-")) for s in stages],
                ]
                for m in metrics
            ]
            task = TASKS.get(e.kind, ("", e.kind))[1]
            section.append(
                f"### {task}: `{e.name}`\n\nEvaluated with `{e.kind}`.\n\n"
                + _table(rows, ["Metric", *stages])
            )
        parts.append("\n\n".join(section))
    training = ["## Training details"]
    if card.datasets:
        training.append("### Training datasets")
        training += [_dataset_section(d, "training") for d in card.datasets]
    if card.eval_datasets:
        training.append("### Evaluation datasets")
        training += [_dataset_section(d, "evaluation") for d in card.eval_datasets]
    if card.hyperparameters:
        training.append(
            "### Training hyperparameters\n\n"
            + "\n".join(
                f"- `{k}`: `{json.dumps(v, default=str)}`" for k, v in card.hyperparameters.items()
            )
        )
    if card.training_log:
        first = ["epoch", "step", "training loss", "validation loss"]
        seen = list(dict.fromkeys(k for r in card.training_log for k in r))
        cols = [c for c in first if c in seen] + [c for c in seen if c not in first]
        training.append(
            "### Training logs\n\n"
            + _table([[_fmt(r.get(c, "-")) for c in cols] for r in card.training_log], cols)
        )
    if card.training_time:
        training.append(
            "### Training time\n\n"
            + "\n".join(
                f"- **{k.capitalize()}**: {_duration(v)}" for k, v in card.training_time.items()
            )
        )
    if card.hardware:
        training.append(
            "### Hardware\n\n" + "\n".join(f"- **{k}**: {v}" for k, v in card.hardware.items())
        )
    if card.emissions:
        co2 = card.emissions
        training.append(
            "### Environmental impact\n\nMeasured with [CodeCarbon](https://github.com/mlco2/codecarbon):\n\n"
            + "\n".join(
                [
                    f"- **Carbon emitted**: {co2.get('emissions', 0) / 1000:.6f} kg of CO2",
                    f"- **Energy consumed**: {co2.get('energy_consumed', 0):.6f} kWh",
                    f"- **Hours used**: {co2.get('hours_used', 0):.4f}",
                    f"- **Hardware**: {co2.get('hardware_used', '-')}",
                ]
            )
        )
    versions = {
        "Python": platform.python_version(),
        "st_lightning": st_lightning.__version__,
        "Sentence Transformers": _package_version("sentence-transformers"),
        "Lightning": lightning.__version__,
        "Transformers": transformers.__version__,
        "PyTorch": torch.__version__,
        "Datasets": _package_version("datasets"),
        "Tokenizers": _package_version("tokenizers"),
        "Hydra": _package_version("hydra-core"),
    }
    training.append(
        "### Framework versions\n\n"
        + "\n".join(f"- {k}: {v}" for k, v in versions.items() if v is not None)
    )
    parts.append("\n\n".join(training))
    cites = {"Sentence-BERT": SBERT, **card.citations}
    parts.append(
        "## Citation\n\n### BibTeX\n\n"
        + "\n\n".join(f"#### {k}\n\n```bibtex\n{v}\n```" for k, v in cites.items())
    )
    return "\n\n".join(parts) + "\n"


def head_lang(card: CardData) -> list[str]:
    if not card.language:
        return []
    return [card.language] if isinstance(card.language, str) else list(card.language)


def widget_examples(infos: Sequence[DatasetInfo], limit: int = 3) -> list[dict[str, Any]]:
    """Hub widget entries from the first training dataset with two or more text columns: a
    row's first text as the source, its other texts and another row's as the candidates."""
    for info in infos:
        texts = [c for c in info.columns if c != info.label]
        rows = [r for r in info.examples if all(isinstance(r.get(c), str) for c in texts)]
        if len(texts) < 2 or len(rows) < 2:
            continue
        out = []
        for i, row in enumerate(rows[:limit]):
            other = rows[(i + 1) % len(rows)]
            sentences = [row[c] for c in texts[1:]] + [other[texts[-1]]]
            out.append({"source_sentence": row[texts[0]], "sentences": sentences[:3]})
        return out
    return []


def evaluation_infos(
    summary: Mapping[str, Mapping[str, Mapping[str, float]]],
    kinds: Mapping[str, str],
    primaries: Mapping[str, str],
) -> list[EvaluationInfo]:
    return [
        EvaluationInfo(
            name=name,
            kind=kinds.get(name, ""),
            stages={k: dict(v) for k, v in stages.items()},
            primary=primaries.get(name),
        )
        for name, stages in summary.items()
    ]
