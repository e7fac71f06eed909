"""End of a training run: export the final and best models with their model cards."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import lightning as L

from st_lightning.card import DatasetInfo, model_card, token_stats
from st_lightning.encoders import SentenceEncoder
from st_lightning.evaluation.callback import EvaluatorCallback
from st_lightning.export import encoder_state, read_checkpoint

log = logging.getLogger(__name__)


def dataset_infos(data: Any, model: Any) -> list[DatasetInfo]:
    infos = []
    for name, tokenized in getattr(data, "tokenized", {}).items():
        spec = data.specs[name]
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
            )
        )
    return infos


def build_card(
    model: Any,
    data: Any,
    evals: EvaluatorCallback,
    name: str,
    encoder: SentenceEncoder,
    base_model: str | None,
    hyperparameters: dict[str, Any],
) -> str:
    infos = dataset_infos(data, model)
    citations = {}
    for info in infos:
        citation = type(model.loss_for(info.name)).citation
        if citation:
            citations[info.loss] = citation
    log_rows = [
        {
            "stage": e["stage"],
            "epoch": e["epoch"],
            "step": e["step"],
            "evaluator": e["evaluator"],
            **{k: v for k, v in e["metrics"].items() if k == _primary(evals, e["evaluator"])},
        }
        for e in evals.history
    ]
    return model_card(
        encoder,
        model_name=name,
        base_model=base_model,
        datasets=infos,
        evaluations=evals.summary(),
        primary_metrics={e.name: e.primary_metric for e in evals.evaluators},
        hyperparameters=hyperparameters,
        training_log=log_rows,
        citations=citations,
    )


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
) -> dict[str, Path]:
    """Save `final/` (the weights at the end) and `best/` (the best monitored checkpoint).
    `encoder`: the trained encoder with whole weights (a gathered copy where `model.encoder` is
    sharded)."""
    out: dict[str, Path] = {}
    card = build_card(model, data, evals, name, encoder, base_model, hyperparameters)
    if final:
        out["final"] = encoder.save_pretrained(output_dir / "final", model_card=card)
        log.info("Exported the final model to %s", out["final"])
    checkpoints = trainer.checkpoint_callback
    best_path = getattr(checkpoints, "best_model_path", "")
    if best and best_path and getattr(checkpoints, "monitor", None):
        checkpoint = read_checkpoint(best_path)
        best_encoder = copy.deepcopy(encoder)
        best_encoder.load_state_dict(encoder_state(checkpoint))
        out["best"] = best_encoder.save_pretrained(output_dir / "best", model_card=card)
        log.info("Exported the best model (%s) to %s", best_path, out["best"])
    if push_to_hub and "final" in out:
        upload_folder(out["final"], str(push_to_hub))
    return out


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
