"""Which transformers class embeds text for a checkpoint's family.

`AutoModel` is right for encoders (BERT, RoBERTa/XLM-R, DistilBERT, MPNet, ModernBERT) and
decoders (Qwen2/3, Llama, Mistral, Gemma: their base model without the LM head), but gives the
whole encoder-decoder for T5-style checkpoints, whose forward then needs decoder inputs. Those
get their encoder-only class, as sentence-transformers does.
"""

from __future__ import annotations

from typing import Any

# model_type -> the transformers class with the encoder stack only.
ENCODER_ONLY = {
    "t5": "T5EncoderModel",
    "mt5": "MT5EncoderModel",
    "umt5": "UMT5EncoderModel",
    "longt5": "LongT5EncoderModel",
    "switch_transformers": "SwitchTransformersEncoderModel",
}


def backbone_class(config: Any) -> Any:
    """The class whose forward maps token ids to token embeddings for `config`'s family."""
    import transformers

    model_type = getattr(config, "model_type", "")
    if model_type in ENCODER_ONLY:
        if getattr(config, "is_decoder", False) or getattr(config, "num_layers", 1) == 0:
            raise ValueError(
                f"This {model_type} checkpoint has no encoder stack (is_decoder="
                f"{getattr(config, 'is_decoder', False)}, num_layers="
                f"{getattr(config, 'num_layers', None)}): sentence embeddings come from the "
                "encoder. Use the full encoder-decoder checkpoint or its encoder."
            )
        return getattr(transformers, ENCODER_ONLY[model_type])
    if getattr(config, "is_encoder_decoder", False):
        raise ValueError(
            f"{model_type} is an encoder-decoder family without an encoder-only class that "
            f"st_lightning knows ({', '.join(sorted(ENCODER_ONLY))}); load its encoder as a "
            "plain transformers model folder instead."
        )
    return transformers.AutoModel


def missing_encoder_weights(loading_info: dict[str, Any], model_type: str) -> list[str]:
    """The encoder weights a checkpoint lacked (a decoder-only or damaged T5 file)."""
    missing = list(loading_info.get("missing_keys", []))
    if model_type in ENCODER_ONLY:
        return [k for k in missing if "encoder" in k or "shared" in k]
    return []


def build_backbone(config: Any) -> Any:
    """A freshly initialised backbone of `config`'s family (the class `backbone_class` picks)."""
    model_class = backbone_class(config)
    if hasattr(model_class, "from_config"):  # AutoModel
        return model_class.from_config(config)
    return model_class(config)
