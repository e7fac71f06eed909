"""LoRA adapters on the backbone, with the `peft` library (`pip install -e ".[lora]"`).

With an adapter only its weights train; the backbone stays frozen. A model folder saved with
an adapter holds the sentence-transformers adapter layout (`adapter_config.json`,
`adapter_model.safetensors`, naming the base model), which `SentenceTransformer(path)` loads
with peft installed; `merge_adapters=True` writes the merged full weights instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn


@dataclass
class LoraSettings:
    """LoRA's settings. `target_modules`: names (or name suffixes) of the linear layers that get
    adapters, e.g. ["query", "key", "value"] for BERT or ["q_proj", "k_proj", "v_proj",
    "o_proj"] for decoders; "all-linear" for every linear layer."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = field(default_factory=lambda: ["query", "key", "value"])
    bias: str = "none"

    @classmethod
    def of(cls, value: LoraSettings | dict[str, Any]) -> LoraSettings:
        return value if isinstance(value, LoraSettings) else cls(**dict(value))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def require_peft() -> Any:
    try:
        import peft
    except ImportError as err:
        raise ImportError(
            "LoRA adapters need the peft package: pip install -e '.[lora]' (or pip install peft)."
        ) from err
    return peft


def is_adapted(model: nn.Module) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def base_model(model: nn.Module) -> nn.Module:
    """The backbone inside a peft wrapper (its linear layers carry the adapters)."""
    return model.get_base_model() if is_adapted(model) else model  # type: ignore[operator]


def linear_names(model: nn.Module) -> list[str]:
    return sorted(
        {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    )


def add_lora(model: nn.Module, settings: LoraSettings | dict[str, Any]) -> nn.Module:
    """`model` wrapped with LoRA adapters; its own weights frozen. Target modules that match
    no linear layer are refused with the names that exist."""
    peft = require_peft()
    lora = LoraSettings.of(settings)
    targets = lora.target_modules
    if targets != "all-linear":
        names = [targets] if isinstance(targets, str) else list(targets)
        found = linear_names(model)
        missing = [t for t in names if not any(t == n or n.endswith(t) for n in found)]
        if missing or not names:
            raise ValueError(
                f"LoRA target_modules {missing or names} match no linear layer of "
                f"{type(model).__name__}; its linear layers are named {found}. Set "
                "model.encoder.lora.target_modules to some of these (or all-linear)."
            )
    if lora.r < 1:
        raise ValueError(f"LoRA r must be >= 1, got {lora.r}.")
    config = peft.LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        bias=lora.bias,
    )
    return peft.get_peft_model(model, config)


def settings_of(model: nn.Module) -> dict[str, Any] | None:
    """The LoRA settings of an adapted backbone (for the structure description)."""
    if not is_adapted(model):
        return None
    peft_config: Any = model.peft_config
    config: Any = peft_config["default"]
    targets = config.target_modules
    if not isinstance(targets, str) and isinstance(targets, set | Sequence):
        targets = sorted(targets)
    return LoraSettings(
        r=config.r,
        alpha=config.lora_alpha,
        dropout=config.lora_dropout,
        target_modules=targets,
        bias=config.bias,
    ).to_dict()
