"""End of a training run: export the final and best models with their model cards."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from st_lightning.card import (
    CardData,
    DatasetInfo,
    evaluation_infos,
    model_card,
    token_stats,
    widget_examples,
)
from st_lightning.encoders import SentenceEncoder
from st_lightning.evaluation.callback import EvaluatorCallback
from st_lightning.export import encoder_state, read_checkpoint
from st_lightning.similarity import similarity_matrix
from st_lightning.utils.logging import CarbonTracker
from st_lightning.utils.record import RunRecord, hardware

log = logging.getLogger(__name__)


def dataset_infos(data: Any, model: Any, which: str = "train") -> list[DatasetInfo]:
    """The card's view of the training datasets (`which="train"`) or evaluation datasets."""
    tokenized_sets = getattr(data, "tokenized" if which == "train" else "eval_tokenized", {})
    specs = data.specs if which == "train" else getattr(data, "eval_specs", {})
    infos = []
    for name, tokenized in tokenized_sets.items():
        spec = specs[name]
        source = getattr(spec, "path", "in-memory")
        rows = tokenized.data
        sample = rows.select(range(min(1000, len(rows))))
        lengths = {
            column: token_stats([len(ids) for ids in sample[f"__input_ids_{i}"]])
            for i, column in enumerate(tokenized.inputs)
        }
        columns = [*tokenized.inputs, *([tokenized.label] if tokenized.label else [])]
        examples = [{c: rows[i][c] for c in columns} for i in range(min(3, len(rows)))]
        loss = model.loss_for(name)
        infos.append(
            DatasetInfo(
                name=name,
                source=str(source),
                rows=len(rows),
                columns=list(tokenized.inputs),
                label=tokenized.label,
                examples=examples,
                token_lengths=lengths,
                loss=type(loss).__name__,
                loss_config=loss.config(),
                sampled=len(sample),
            )
        )
    if which == "train":
        infos += [stream_info(stream, model) for stream in getattr(data, "streams", {}).values()]
    return infos


def stream_info(stream: Any, model: Any) -> DatasetInfo:
    """The card's view of a streamed dataset: its size where known, and its first rows."""
    encoder = model.encoder

    def ids(texts: list[str]) -> list[list[int]]:
        return encoder.tokenizer(texts, truncation=True, max_length=encoder.max_seq_length)[
            "input_ids"
        ]

    lengths = {
        column: token_stats([len(x) for x in ids([r[column] for r in stream.head])])
        for column in stream.inputs
    }
    loss = model.loss_for(stream.name)
    return DatasetInfo(
        name=stream.name,
        source=str(stream.source),
        rows=stream.num_rows,
        columns=list(stream.inputs),
        label=stream.label,
        examples=[{c: row[c] for c in stream.columns} for row in stream.head[:3]],
        token_lengths=lengths,
        loss=type(loss).__name__,
        loss_config=loss.config(),
        streamed=True,
        sampled=len(stream.head),
    )


def training_log(record: RunRecord | None, evals: EvaluatorCallback) -> list[dict[str, Any]]:
    """Training loss by logged step, joined with each evaluation's primary metric (and the
    evaluation loss) at its step; at most `MAX_LOG_ROWS` rows, evenly thinned, the last kept."""
    rows: dict[int, dict[str, Any]] = {}
    for row in record.rows if record is not None else []:
        rows[row["step"]] = dict(row)
    for e in evals.history:
        if e["stage"] == "before":
            continue
        step = e["step"]
        entry = rows.setdefault(step, {"epoch": float(e["epoch"]), "step": step})
        if e["evaluator"] == "loss":
            entry["validation loss"] = e["metrics"].get("all")
            continue
        primary = _primary(evals, e["evaluator"])
        if primary in e["metrics"]:
            entry[f"{e['evaluator']}/{primary}"] = e["metrics"][primary]
    ordered = [rows[k] for k in sorted(rows)]
    if len(ordered) > MAX_LOG_ROWS:
        keep = np.linspace(0, len(ordered) - 1, MAX_LOG_ROWS).round().astype(int)
        ordered = [ordered[i] for i in sorted(set(keep.tolist()))]
    return ordered


MAX_LOG_ROWS = 100


def build_card(
    trainer: L.Trainer,
    model: Any,
    data: Any,
    evals: EvaluatorCallback,
    encoder: SentenceEncoder,
    *,
    name: str,
    load_path: str,
    base_model: str | None,
    hyperparameters: dict[str, Any],
    language: str | list[str] | None = "en",
    license: str | None = None,
) -> str:
    infos = dataset_infos(data, model)
    eval_infos = dataset_infos(data, model, "eval")
    citations = {}
    for info in [*infos, *eval_infos]:
        citation = type(model.loss_for(info.name)).citation
        if citation:
            citations[info.loss] = citation
    record = next(
        (cb for cb in getattr(trainer, "callbacks", []) if isinstance(cb, RunRecord)), None
    )
    carbon = next(
        (cb for cb in getattr(trainer, "callbacks", []) if isinstance(cb, CarbonTracker)), None
    )
    eval_seconds = sum(e.get("seconds", 0.0) for e in evals.history)
    # Evaluations between the first and last step run inside the training time.
    eval_inside = sum(
        e.get("seconds", 0.0) for e in evals.history if e["stage"] not in ("before", "after")
    )
    timing = {}
    if record is not None:
        training = max(record.train_seconds - eval_inside, 0.0)
        timing = {"training": training, "evaluation": eval_seconds}
        timing["total"] = training + eval_seconds
    widget = widget_examples(infos)
    sentences = [widget[0]["source_sentence"], *widget[0]["sentences"][:2]] if widget else []
    similarities: list[list[float]] = []
    if sentences:
        vectors = torch.as_tensor(encoder.encode(sentences, convert_to="numpy"))
        matrix = similarity_matrix(vectors, vectors, encoder.similarity_fn_name)
        similarities = matrix.tolist()
    card = CardData(
        model_name=name,
        load_path=load_path,
        base_model=base_model,
        language=language,
        license=license,
        datasets=infos,
        eval_datasets=eval_infos,
        evaluations=evaluation_infos(
            # The evaluators' metrics; the evaluation loss goes to the training log.
            {k: v for k, v in evals.summary().items() if k in {e.name for e in evals.evaluators}},
            {e.name: type(e).__name__ for e in evals.evaluators},
            {e.name: e.primary_metric for e in evals.evaluators},
        ),
        hyperparameters=hyperparameters,
        training_log=training_log(record, evals),
        training_time=timing,
        hardware=hardware(trainer),
        emissions=carbon.emissions if carbon is not None else None,
        citations=citations,
        widget=widget,
        usage_sentences=sentences,
        usage_similarities=similarities,
    )
    return model_card(encoder, card)


def _primary(evals: EvaluatorCallback, name: str) -> str:
    return next((e.primary_metric for e in evals.evaluators if e.name == name), "")


def export_models(
    trainer: L.Trainer,
    model: Any,
    data: Any,
    evals: EvaluatorCallback,
    output_dir: Path,
    encoder: SentenceEncoder,
    *,
    name: str,
    base_model: str | None,
    hyperparameters: dict[str, Any],
    final: bool = True,
    best: bool = True,
    push_to_hub: str | None = None,
    language: str | list[str] | None = "en",
    license: str | None = None,
    merge_adapters: bool = False,
) -> dict[str, Path]:
    """Save `final/` (the weights at the end) and `best/` (the best monitored checkpoint), each
    with its own card. `encoder`: the trained encoder with whole weights (a gathered copy where
    `model.encoder` is sharded)."""
    out: dict[str, Path] = {}

    def card_for(which: Path, weights: SentenceEncoder, repo: str | None = None) -> str:
        return build_card(
            trainer, model, data, evals, weights, name=name,
            load_path=repo or _shown_path(which), base_model=base_model,
            hyperparameters=hyperparameters, language=language, license=license,
        )  # fmt: skip

    if final:
        folder = output_dir / "final"
        card = card_for(folder, encoder, str(push_to_hub) if push_to_hub else None)
        out["final"] = encoder.save_pretrained(
            folder, model_card=card, merge_adapters=merge_adapters
        )
        log.info("Exported the final model to %s", out["final"])
    checkpoints = trainer.checkpoint_callback
    best_path = getattr(checkpoints, "best_model_path", "")
    if best and best_path and getattr(checkpoints, "monitor", None):
        checkpoint = read_checkpoint(best_path)
        best_encoder = copy.deepcopy(encoder)
        best_encoder.load_state_dict(encoder_state(checkpoint))
        folder = output_dir / "best"
        out["best"] = best_encoder.save_pretrained(
            folder, model_card=card_for(folder, best_encoder)
        )
        log.info("Exported the best model (%s) to %s", best_path, out["best"])
    if push_to_hub and "final" in out:
        upload_folder(out["final"], str(push_to_hub))
    return out


def _shown_path(folder: Path) -> str:
    """The folder as the usage snippet names it: relative to the working directory if inside."""
    try:
        return folder.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return folder.resolve().as_posix()


def upload_folder(folder: Path, repo_id: str) -> str:
    """Upload a model folder (card included) to the Hugging Face Hub; the token comes from the
    environment or `huggingface-cli login`, never from the config."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    url = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        commit_message="Upload model trained with st_lightning",
    )
    log.info("Pushed %s to %s", folder, repo_id)
    return str(url)


def summary_table(evals: EvaluatorCallback) -> str:
    """Primary metrics before and after training, as a small text table."""
    lines = [f"{'evaluator':<20} {'metric':<28} {'before':>9} {'after':>9}"]
    for e in evals.evaluators:
        stages = evals.summary().get(e.name, {})
        before = stages.get("before", {}).get(e.primary_metric)
        after = stages.get("after", {}).get(e.primary_metric)
        fmt = lambda v: f"{v:9.4f}" if v is not None else f"{'-':>9}"  # noqa: E731
        lines.append(f"{e.name:<20} {e.primary_metric:<28} {fmt(before)} {fmt(after)}")
    return "\n".join(lines)
