"""What a training checkpoint holds besides Lightning's own state, and the checks on resuming."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import torch


def rng_state() -> dict[str, Any]:
    """The random generators' state: dropout draws continue where they were, so a resumed run
    matches an unbroken one."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": list(random.getstate()[1]),
    }


def restore_rng(state: dict[str, Any] | None) -> None:
    if not state:
        return
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate((3, tuple(state["python"]), None))


def architecture(encoder: Any, losses: Mapping[str, Any] | Any) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the backbone's shape, the pooling, the
    embedding size and the loss per dataset."""
    config = encoder.transformer.config
    return {
        "model_type": getattr(config, "model_type", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "num_hidden_layers": getattr(config, "num_hidden_layers", None),
        "vocab_size": getattr(config, "vocab_size", None),
        "pooling": list(encoder.pooling.modes),
        "embedding_dimension": encoder.embedding_dimension,
        "losses": {k: type(v).__name__ for k, v in losses.items()},
    }


def check_resumable(checkpoint: dict[str, Any], architecture: dict[str, Any], trained: int) -> None:
    """Refuse, before any state is loaded, a checkpoint of another model or losses
    (`architecture` is this run's record) or one whose optimizer state holds a different number
    of parameters than this run trains (`trained`)."""
    saved = checkpoint.get("st_lightning", {}).get("architecture")
    if saved is None:
        raise ValueError(
            "This checkpoint was not written by st_lightning (no architecture record)."
        )
    diff = {k: (saved.get(k), v) for k, v in architecture.items() if saved.get(k) != v}
    if diff:
        raise ValueError(
            "The checkpoint belongs to another model; (checkpoint, this run) differ in "
            f"{diff}. Resume with the same model and losses, or start a new run."
        )
    groups = [
        g["params"]
        for s in checkpoint.get("optimizer_states", [])
        for g in s.get("param_groups", [])
    ]
    held = sum(map(len, groups))
    if groups and held != trained:
        raise ValueError(
            f"The checkpoint's optimizer state holds {held} parameters, and this run trains "
            f"{trained}. Checkpoints written before st_lightning stopped training weights the "
            "embeddings never use (BERT's pooler) cannot be resumed: export it (python -m "
            "st_lightning.export CKPT OUT) and start a new run from the exported folder."
        )
