"""An unpadded forward pass for BERT-family backbones: the dense layers see real tokens only.

A padded batch spends most of a BERT layer's work (the query/key/value, output and
feed-forward projections, the layer norms and dropouts) on padding positions whose results
are thrown away. Here the real tokens of a batch are packed into one [tokens, hidden] matrix;
every per-token operation runs on it, and only attention scatters queries, keys and values
into the padded [batch, heads, length, head_dim] layout (with the padding masked, as in the
padded model) and gathers its output back. The result equals the backbone's own forward at
every real position (padding positions come back as zeros, which pooling ignores).

Supported: `transformers.BertModel` encoders with absolute position embeddings (BERT,
MiniLM, all-MiniLM-L6-v2, BGE, E5, GTE-base and the like). Others use their own forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def supports(model: nn.Module) -> bool:
    """Whether `bert_token_embeddings` reproduces this backbone's forward."""
    try:
        from transformers import BertModel
    except ImportError:  # pragma: no cover - transformers is a dependency
        return False
    if type(model) is not BertModel:
        return False
    config = model.config
    return (
        getattr(config, "position_embedding_type", "absolute") == "absolute"
        and not config.is_decoder
        and not config.add_cross_attention
        and not config.chunk_size_feed_forward
        and getattr(config, "_attn_implementation", "eager") in ("eager", "sdpa")
    )


def bert_token_embeddings(model: nn.Module, features: dict[str, Tensor]) -> Tensor:
    """Last hidden states [batch, length, hidden] of `model` (a supported BertModel)."""
    ids = features["input_ids"]
    mask = features["attention_mask"].bool()
    batch, length = ids.shape
    real = mask.flatten().nonzero().squeeze(1)  # positions of real tokens in batch * length
    # Position ids as the padded model uses them: the index within the row.
    positions = torch.arange(length, device=ids.device).expand(batch, length).flatten()[real]
    token_types = features.get("token_type_ids")
    emb = model.embeddings
    x = emb.word_embeddings(ids.flatten()[real]) + emb.position_embeddings(positions)
    if token_types is not None:
        x = x + emb.token_type_embeddings(token_types.flatten()[real])
    else:
        x = x + emb.token_type_embeddings.weight[0]
    x = emb.dropout(emb.LayerNorm(x))
    keep = mask[:, None, None, :]  # attend to real keys only

    def padded(t: Tensor, heads: int) -> Tensor:
        out = t.new_zeros(batch * length, t.shape[-1]).index_copy(0, real, t)
        return out.view(batch, length, heads, -1).transpose(1, 2)

    for layer in model.encoder.layer:
        attention = layer.attention.self
        heads = attention.num_attention_heads
        context = F.scaled_dot_product_attention(
            padded(attention.query(x), heads),
            padded(attention.key(x), heads),
            padded(attention.value(x), heads),
            attn_mask=keep,
            dropout_p=attention.dropout.p if attention.training else 0.0,
            scale=attention.scaling,
        )
        context = context.transpose(1, 2).reshape(batch * length, -1)[real]
        out = layer.attention.output
        x = out.LayerNorm(out.dropout(out.dense(context)) + x)
        ffn = layer.output
        x = ffn.LayerNorm(ffn.dropout(ffn.dense(layer.intermediate(x))) + x)
    hidden = x.new_zeros(batch * length, x.shape[-1]).index_copy(0, real, x)
    return hidden.view(batch, length, -1)
