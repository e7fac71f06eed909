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


DECODERS = ("qwen2", "qwen3", "llama", "mistral", "gemma")


def random_config(
    model_type: str,
    vocab_size: int,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 64,
    max_positions: int = 128,
) -> Any:
    """The config of a small random model of `model_type`, in each family's own key names (for
    tests and benchmarks: DistilBERT's `dim`/`n_layers`, T5's `d_model`/`d_ff`, decoders'
    grouped-query heads, RoBERTa's two extra positions, ModernBERT's special ids)."""
    from transformers import AutoConfig

    base: dict[str, Any] = dict(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
    )
    head_dim = hidden_size // num_heads
    settings: dict[str, Any]
    if model_type in DECODERS:
        kv_heads = max(num_heads // 2, 1)
        settings = dict(base, num_key_value_heads=kv_heads, max_position_embeddings=max_positions)
        if model_type in ("qwen3", "gemma"):
            settings["head_dim"] = head_dim
    elif model_type in ("roberta", "xlm-roberta", "mpnet"):
        settings = dict(base, max_position_embeddings=max_positions + 2)
        if model_type != "mpnet":
            settings["pad_token_id"] = 0
    elif model_type == "distilbert":
        settings = dict(
            dim=hidden_size,
            n_layers=num_layers,
            n_heads=num_heads,
            hidden_dim=intermediate_size,
            max_position_embeddings=max_positions,
        )
    elif model_type == "modernbert":
        ids = dict(pad_token_id=0, bos_token_id=101, eos_token_id=102, cls_token_id=101)
        settings = dict(
            base,
            **ids,
            sep_token_id=102,
            max_position_embeddings=max_positions,
            global_attn_every_n_layers=1,
            local_attention=max(max_positions // 4, 16),
        )
    elif model_type in ENCODER_ONLY:
        settings = dict(
            d_model=hidden_size,
            d_ff=intermediate_size,
            num_layers=num_layers,
            num_heads=num_heads,
            d_kv=head_dim,
        )
    else:
        settings = dict(base, max_position_embeddings=max_positions)
    return AutoConfig.for_model(model_type, vocab_size=vocab_size, **settings)


def hidden_size_of(config: Any) -> int:
    for key in ("hidden_size", "dim", "d_model"):
        if getattr(config, key, None):
            return int(getattr(config, key))
    raise ValueError(f"{type(config).__name__} names no hidden size.")
