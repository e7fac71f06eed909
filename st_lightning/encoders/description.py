"""A plain description of a `SentenceEncoder`'s structure, from which it is rebuilt.

Training checkpoints carry it next to the weights, so any checkpoint exports to a model folder
however its run was built (Hydra, Python, a notebook): the backbone is rebuilt from its
transformers config (no weights are downloaded), the tokenizer from its name or folder, and
the weights come from the checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from st_lightning.encoders.adapters import settings_of
from st_lightning.encoders.dense import Dense
from st_lightning.encoders.hub import resolve_model_path
from st_lightning.encoders.pooling import Pooling
from st_lightning.encoders.sentence_encoder import SentenceEncoder


@dataclass(frozen=True)
class EncoderDescription:
    """What `SentenceEncoder` is built from, as plain data (no weights).

    Args:
        backbone: the transformers config of the backbone (`config.to_dict()`).
        tokenizer: the tokenizer's Hub id or folder.
        pooling: `Pooling.config()`; dense: each `Dense.config()` in order.
        The rest are `SentenceEncoder`'s arguments of the same names.
    """

    backbone: dict[str, Any]
    tokenizer: str
    pooling: dict[str, Any]
    dense: list[dict[str, Any]] = field(default_factory=list)
    normalize: bool = False
    max_seq_length: int = 512
    do_lower_case: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    similarity_fn_name: str = "cosine"
    lora: dict[str, Any] | None = None  # LoRA settings when the backbone carries an adapter
    append_eos: bool = False

    @classmethod
    def of(cls, encoder: SentenceEncoder) -> EncoderDescription:
        return cls(
            backbone=encoder.transformer.config.to_dict(),
            tokenizer=str(encoder.tokenizer.name_or_path),
            pooling=dict(encoder.pooling.config()),
            dense=[dict(layer.config()) for layer in encoder.dense_layers],
            normalize=bool(encoder.normalize),
            max_seq_length=int(encoder.max_seq_length),
            do_lower_case=bool(encoder.do_lower_case),
            prompts=dict(encoder.prompts),
            default_prompt_name=encoder.default_prompt_name,
            similarity_fn_name=str(encoder.similarity_fn_name),
            lora=settings_of(encoder.transformer),
            append_eos=bool(getattr(encoder, "append_eos", False)),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderDescription:
        return cls(**data)

    def build(self) -> SentenceEncoder:
        """A new encoder of this structure (backbone weights freshly initialised)."""
        from transformers import AutoConfig, AutoTokenizer

        from st_lightning.encoders.families import build_backbone

        settings = dict(self.backbone)
        model_type = settings.pop("model_type", None)
        if not model_type:
            raise ValueError("The backbone description has no model_type; it cannot be rebuilt.")
        config = AutoConfig.for_model(model_type, **settings)
        transformer = build_backbone(config)
        # The name it was loaded from: an adapter export names it as its base model.
        transformer.config.name_or_path = str(self.backbone.get("_name_or_path", ""))
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(self.tokenizer))
        return SentenceEncoder(
            transformer,
            tokenizer,
            Pooling.from_config(self.pooling),
            dense=[Dense.from_config(d) for d in self.dense],
            normalize=self.normalize,
            max_seq_length=self.max_seq_length,
            do_lower_case=self.do_lower_case,
            prompts=self.prompts,
            default_prompt_name=self.default_prompt_name,
            similarity_fn_name=self.similarity_fn_name,
            lora=self.lora,
            append_eos=self.append_eos,
        )
