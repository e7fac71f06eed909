"""Read and write the sentence-transformers model folder layout.

Reads the v2-v5 layout and the v6 key names; writes the v2-v5 layout, which sentence-transformers
3 to 6 all load. Writes are atomic: a temporary sibling folder is filled, then renamed into place.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoTokenizer

from st_lightning.encoders.dense import Dense
from st_lightning.encoders.families import backbone_class, missing_encoder_weights
from st_lightning.encoders.hub import is_hub_id, resolve_model_path
from st_lightning.encoders.pooling import Pooling
from st_lightning.encoders.sentence_encoder import SentenceEncoder

_SBERT_CONFIGS = ["sentence_bert_config.json"] + [
    f"sentence_{arch}_config.json"
    for arch in ("roberta", "distilbert", "camembert", "albert", "xlm-roberta", "xlnet")
]
_KNOWN_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")
_TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the model folder is damaged.") from err


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Without transformers' per-file bars ("Loading weights", "Writing model shards"): loading
    or saving a model is one line of a run, not a bar that fills in a millisecond."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _load_adapted(folder: Path, trust_remote_code: bool, model_kwargs: dict[str, Any]):
    """A folder in the adapter layout: its base model (named in adapter_config.json) with the
    adapter loaded, trainable; the tokenizer is the folder's."""
    from st_lightning.encoders.adapters import require_peft

    peft = require_peft()
    base_name = _read_json(folder / "adapter_config.json").get("base_model_name_or_path")
    if not base_name:
        raise ValueError(f"{folder / 'adapter_config.json'} does not name its base model.")
    base, _ = _load_backbone(resolve_model_path(base_name), trust_remote_code, model_kwargs)
    base.config.name_or_path = str(base_name)  # what a re-export names as the base
    adapted = peft.PeftModel.from_pretrained(base, str(folder), is_trainable=True)
    return adapted, AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)


def _load_backbone(folder: Path, trust_remote_code: bool, model_kwargs: dict[str, Any]):
    if (folder / "adapter_config.json").exists():
        return _load_adapted(folder, trust_remote_code, model_kwargs)
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ValueError(f"Cannot read the transformer config in {folder}: {err}") from err
    model_class = backbone_class(config)  # T5-style checkpoints: their encoder only
    try:
        with _no_progress_bars():
            transformer, info = model_class.from_pretrained(
                folder,
                trust_remote_code=trust_remote_code,
                output_loading_info=True,
                **model_kwargs,
            )
    except (OSError, ValueError) as err:
        raise ValueError(f"Cannot load the transformer weights in {folder}: {err}") from err
    lacking = missing_encoder_weights(info, config.model_type)
    if lacking:
        raise ValueError(
            f"{folder} holds no weights for the {config.model_type} encoder ({len(lacking)} "
            f"missing, e.g. {lacking[:3]}): a decoder-only checkpoint cannot embed text. Use a "
            "checkpoint with the encoder."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError) as err:
        raise FileNotFoundError(
            f"No usable tokenizer in {folder} (tokenizer.json / vocab files): {err}. "
            "Save the tokenizer beside the model (tokenizer.save_pretrained(folder))."
        ) from err
    vocab_size = getattr(transformer.config, "vocab_size", None) or 0
    # transformers 5 builds an empty tokenizer (special tokens only) when the files are missing.
    if not any((folder / name).exists() for name in _TOKENIZER_FILES) or len(tokenizer) < min(
        vocab_size, 1000
    ):
        raise FileNotFoundError(
            f"No tokenizer in {folder}: none of {', '.join(_TOKENIZER_FILES)} is there. Save the "
            "tokenizer beside the model (tokenizer.save_pretrained(folder))."
        )
    return transformer, tokenizer


def load_encoder(
    name_or_path: str | os.PathLike,
    *,
    pooling_mode: str | list[str] | None = None,
    max_seq_length: int | None = None,
    normalize: bool | None = None,
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
    similarity_fn_name: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    cache_dir: str | None = None,
    token: str | bool | None = None,
    model_kwargs: dict[str, Any] | None = None,
    unpadded: bool = True,
    attention_tokens: int | Literal["auto"] | None = "auto",
    gradient_checkpointing: bool = False,
    lora: Any = None,
    append_eos: bool = False,
) -> SentenceEncoder:
    """Load a sentence-transformers folder, or a plain transformer with mean pooling.

    Keyword arguments that are not None override what the folder says; `unpadded`,
    `attention_tokens` and `gradient_checkpointing` are `SentenceEncoder`'s (how the forward
    runs).
    """
    folder = resolve_model_path(name_or_path, revision=revision, cache_dir=cache_dir, token=token)
    kwargs = dict(model_kwargs or {})
    modules_file = folder / "modules.json"
    st_config: dict[str, Any] = {}
    dense: list[Dense] = []
    pooling: Pooling | None = None
    norm = False
    sbert: dict[str, Any] = {}
    if modules_file.exists():
        entries = _read_json(modules_file)
        kinds = [str(e.get("type", "")).rsplit(".", 1)[-1] for e in entries]
        unknown = [k for k in kinds if k not in _KNOWN_MODULES]
        if unknown or not kinds or kinds[0] != "Transformer":
            raise ValueError(
                f"{modules_file} lists modules {kinds}; st_lightning loads Transformer, then "
                "Pooling, then any Dense, then an optional Normalize."
            )
        for entry, kind in zip(entries, kinds, strict=True):
            sub = folder / entry.get("path", "")
            if kind == "Transformer":
                transformer, tokenizer = _load_backbone(sub, trust_remote_code, kwargs)
                for name in _SBERT_CONFIGS:
                    if (sub / name).exists():
                        sbert = _read_json(sub / name)
                        break
            elif kind == "Pooling":
                pooling = Pooling.from_config(_read_json(sub / "config.json"))
            elif kind == "Dense":
                layer = Dense.from_config(_read_json(sub / "config.json"))
                if (sub / "model.safetensors").exists():
                    state = load_file(sub / "model.safetensors")
                else:
                    state = torch.load(
                        sub / "pytorch_model.bin", map_location="cpu", weights_only=True
                    )
                layer.load_state_dict(state, strict=False)
                dense.append(layer)
            else:
                norm = True
        if pooling is None:
            raise ValueError(f"{modules_file} has no Pooling module; add one or load the backbone.")
        if (folder / "config_sentence_transformers.json").exists():
            st_config = _read_json(folder / "config_sentence_transformers.json")
    elif (folder / "config.json").exists() or (folder / "adapter_config.json").exists():
        transformer, tokenizer = _load_backbone(folder, trust_remote_code, kwargs)
    else:
        raise ValueError(
            f"{folder} is not a model folder: it has neither modules.json (sentence-transformers) "
            "nor config.json (transformers)."
        )
    if pooling_mode is not None or pooling is None:
        pooling = Pooling(transformer.config.hidden_size, pooling_mode or "mean")
    if max_seq_length is None:
        max_seq_length = sbert.get("max_seq_length")  # v6 keeps it as the tokenizer's limit
        if max_seq_length is None and tokenizer.model_max_length < 100_000:
            max_seq_length = tokenizer.model_max_length
    return SentenceEncoder(
        transformer,
        tokenizer,
        pooling,
        dense=dense,
        normalize=norm if normalize is None else normalize,
        max_seq_length=max_seq_length,
        do_lower_case=bool(sbert.get("do_lower_case", False)),
        prompts=prompts if prompts is not None else st_config.get("prompts") or {},
        default_prompt_name=default_prompt_name or st_config.get("default_prompt_name"),
        similarity_fn_name=similarity_fn_name or st_config.get("similarity_fn_name") or "cosine",
        unpadded=unpadded,
        attention_tokens=attention_tokens,
        gradient_checkpointing=gradient_checkpointing,
        lora=lora,
        append_eos=append_eos,
    )


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _versions() -> dict[str, str]:
    import transformers

    from st_lightning.version import __version__

    return {
        "st_lightning": __version__,
        "transformers": transformers.__version__,
        "pytorch": torch.__version__,
    }


def write_folder(encoder: SentenceEncoder, out: Path, merge_adapters: bool = False) -> None:
    """Write every file of the layout into the empty folder `out`."""
    from st_lightning.encoders.adapters import is_adapted

    transformer: Any = encoder.transformer
    if is_adapted(transformer):
        if merge_adapters:  # a copy: the encoder keeps training its adapter
            transformer = copy.deepcopy(transformer).merge_and_unload()
        else:
            _check_adapter_base(transformer)
    with _no_progress_bars():
        transformer.save_pretrained(out)
    encoder.tokenizer.save_pretrained(out)
    tok_config = out / "tokenizer_config.json"
    if tok_config.exists():  # sentence-transformers 6 reads the length limit from here
        data = _read_json(tok_config)
        data["model_max_length"] = encoder.max_seq_length
        _write_json(tok_config, data)
    _write_json(
        out / "sentence_bert_config.json",
        {"max_seq_length": encoder.max_seq_length, "do_lower_case": encoder.do_lower_case},
    )
    modules = [("", "Transformer"), ("1_Pooling", "Pooling")]
    _write_json(out / "1_Pooling" / "config.json", encoder.pooling.config())
    for layer in encoder.dense_layers:
        sub = f"{len(modules)}_Dense"
        modules.append((sub, "Dense"))
        _write_json(out / sub / "config.json", layer.config())
        tensors = {k: v.detach().cpu().contiguous() for k, v in layer.state_dict().items()}
        save_file(tensors, out / sub / "model.safetensors")
    if encoder.normalize:
        sub = f"{len(modules)}_Normalize"
        modules.append((sub, "Normalize"))
        (out / sub).mkdir()
    _write_json(
        out / "modules.json",
        [
            {"idx": i, "name": str(i), "path": p, "type": f"sentence_transformers.models.{kind}"}
            for i, (p, kind) in enumerate(modules)
        ],
    )
    _write_json(
        out / "config_sentence_transformers.json",
        {
            "__version__": _versions(),
            "prompts": encoder.prompts,
            "default_prompt_name": encoder.default_prompt_name,
            "similarity_fn_name": encoder.similarity_fn_name,
            "model_type": "SentenceTransformer",
        },
    )


def _check_adapter_base(transformer: Any) -> None:
    """The adapter layout names its base model; a base that no path or Hub id names (built
    from a config in memory) cannot be found again by whoever loads the folder."""
    base = transformer.peft_config["default"].base_model_name_or_path
    if not base or not (Path(str(base)).expanduser().exists() or is_hub_id(base)):
        raise ValueError(
            f"The adapter's base model ({base!r}) is neither a folder nor a Hub id, so the saved "
            "adapter could not be loaded again. Save with merge_adapters=True (export."
            "merge_adapters=true), or start from a saved or Hub model."
        )


def save_encoder(
    encoder: SentenceEncoder,
    path: str | os.PathLike,
    model_card: str | None = None,
    merge_adapters: bool = False,
) -> Path:
    """Save atomically: nothing appears at `path` until every file is written."""
    target = Path(path).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        write_folder(encoder, tmp, merge_adapters=merge_adapters)
        (tmp / "README.md").write_text(model_card or default_card(encoder, target.name), "utf-8")
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def default_card(encoder: SentenceEncoder, name: str) -> str:
    """A short model card; training runs write a fuller one."""
    modes = ", ".join(encoder.pooling.modes)
    return f"""---
library_name: sentence-transformers
pipeline_tag: sentence-similarity
tags:
- sentence-transformers
- sentence-similarity
- st_lightning
---

# {name}

A sentence-embedding model saved by st_lightning in the sentence-transformers format.

- Embedding dimension: {encoder.embedding_dimension}
- Max sequence length: {encoder.max_seq_length}
- Pooling: {modes}; normalized: {encoder.normalize}
- Similarity: {encoder.similarity_fn_name}

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("{name}")
embeddings = model.encode(["A first sentence.", "A second one."])
```
"""
