"""An unpadded forward pass for BERT-family backbones: the dense layers see real tokens only.

A padded batch spends most of a BERT layer's work (the query/key/value, output and
feed-forward projections, the layer norms and dropouts) on padding positions whose results
are thrown away. Here the real tokens of the whole batch are packed into one [tokens, hidden]
matrix and every per-token operation runs on it once per layer: one large matrix product
instead of many small ones, and one embedding lookup. Only attention needs rows side by side:
rows are sorted by length and cut into groups of at most `attention_tokens` token positions;
each group's queries, keys and values are placed in a [rows, heads, longest, head_dim] layout
with the padding masked, as in the padded model, and the outputs are packed again. The result
equals the backbone's own forward at every real position (padding positions come back as
zeros, which pooling ignores).

Supported: `transformers.BertModel` encoders with absolute position embeddings (BERT,
MiniLM, all-MiniLM-L6-v2, BGE, E5 and the like). Others use their own forward.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import BertModel

from st_lightning.compat.transformers import attention_implementation


def supports(model: nn.Module) -> bool:
    """Whether `bert_token_embeddings` reproduces this backbone's forward."""
    if type(model) is not BertModel:
        return False
    config = model.config
    return (
        getattr(config, "position_embedding_type", "absolute") == "absolute"
        and not config.is_decoder
        and not config.add_cross_attention
        and not config.chunk_size_feed_forward
        and attention_implementation(config) in ("eager", "sdpa")
    )


# Token positions per forward pass of the length grouping under length_group_tokens="auto"
# (EmbeddingModule) and attention_tokens="auto" (SentenceEncoder).
# On 2 CPU cores 384-768 were equally fast for all-MiniLM-L6-v2 and 16 rows per pass was 25%
# slower (benchmarks/length_grouping.py); accelerators want bigger matrices: 16384 is chosen,
# not measured (docs/distributed.md; benchmarks/gpu.py measures it on a GPU).
CPU_GROUP_TOKENS = 512
ACCELERATOR_GROUP_TOKENS = 16384


def resolve_budget(budget: int | str | None, device: torch.device) -> int | None:
    """A token budget as configured ("auto", an int, or None for none) for tensors on `device`."""
    if budget == "auto":
        return CPU_GROUP_TOKENS if device.type == "cpu" else ACCELERATOR_GROUP_TOKENS
    return None if budget is None else int(budget)


def group_sizes(lengths: list[int], budget: int) -> list[int]:
    """Split rows sorted longest first into groups of at most `budget` padded token positions."""
    sizes, start = [], 0
    while start < len(lengths):
        size = min(max(1, budget // max(1, lengths[start])), len(lengths) - start)
        sizes.append(size)
        start += size
    return sizes


class _Groups:
    """Where each attention group's tokens sit in the packed matrix and in the group's layout.

    In the group's layout every row's real tokens come first, in their order, whatever the
    padding side of the input: attention does not depend on where keys sit (positions are
    already embedded), only on which are masked."""

    def __init__(self, mask: Tensor, attention_tokens: int) -> None:
        lengths = mask.sum(dim=1)
        order = lengths.argsort(descending=True)
        sorted_lengths = lengths[order].tolist()  # the one host read of the forward
        packed_index = (mask.flatten().cumsum(0) - 1).view(mask.shape)
        slot = mask.cumsum(1) - 1  # each real token's index among its row's real tokens
        self.groups: list[tuple[Tensor, Tensor, Tensor, int, int]] = []
        sources = []
        start = 0
        for size in group_sizes(sorted_lengths, attention_tokens):
            rows = order[start : start + size]
            width = sorted_lengths[start]
            real = mask[rows]
            source = packed_index[rows][real]  # packed token of each real token, row by row
            place = torch.arange(size, device=mask.device)[:, None] * width + slot[rows]
            target = place[real]  # its place in size * width
            positions = torch.arange(width, device=mask.device)
            keep = positions[None, :] < lengths[rows][:, None]
            self.groups.append((source, target, keep, size, width))
            sources.append(source)
            start += size
        # Packed order -> order of the concatenated group outputs, and back.
        self.unsort = torch.cat(sources).argsort()

    def attention(self, q: Tensor, k: Tensor, v: Tensor, heads: int, dropout: float, scale: float):
        outputs = []
        for source, target, keep, size, width in self.groups:
            q_, k_, v_ = (
                t.new_zeros(size * width, t.shape[-1])
                .index_copy(0, target, t[source])
                .view(size, width, heads, -1)
                .transpose(1, 2)
                for t in (q, k, v)
            )
            context = F.scaled_dot_product_attention(
                q_, k_, v_, attn_mask=keep[:, None, None, :], dropout_p=dropout, scale=scale
            )
            outputs.append(context.transpose(1, 2).reshape(size * width, -1)[target])
        return torch.cat(outputs)[self.unsort]


def varlen_kernel(q: Tensor, dropout: float) -> Any:
    """A variable-length attention kernel for packed [tokens, heads, dim] inputs, or None.

    On CUDA in bf16/fp16: flash-attn's `flash_attn_varlen_func` when the package is installed
    (it applies attention dropout), else torch's own `varlen_attn` when no dropout is asked
    for (evaluation, or attention_probs_dropout_prob=0). Then no row is padded at all. In
    every other case (CPU, float32, dropout without flash-attn) attention runs in padded,
    length-sorted groups."""
    if q.device.type != "cuda" or q.dtype not in (torch.float16, torch.bfloat16):
        return None
    try:
        from flash_attn import flash_attn_varlen_func
    except ImportError:
        flash_attn_varlen_func = None
    if flash_attn_varlen_func is not None:

        def flash(q, k, v, cu, longest, dropout_p, scale):  # type: ignore[no-untyped-def]
            return flash_attn_varlen_func(
                q, k, v, cu, cu, longest, longest, dropout_p=dropout_p, softmax_scale=scale
            )

        return flash
    if dropout > 0:
        return None
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:  # torch before 2.10
        return None

    def native(q, k, v, cu, longest, dropout_p, scale):  # type: ignore[no-untyped-def]
        return varlen_attn(q, k, v, cu, cu, longest, longest, scale=scale)

    return native


class _Layout:
    """Attention over the packed tokens of a batch: one variable-length kernel call where the
    device has one (`varlen_kernel`), else padded length-sorted groups (`_Groups`, built on
    first use)."""

    def __init__(self, mask: Tensor, attention_tokens: int) -> None:
        self.mask = mask
        self.attention_tokens = attention_tokens
        lengths = mask.sum(dim=1)
        # Packed tokens are row after row, so each row's tokens are one contiguous run.
        self.cu_seqlens = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))
        # The kernels take the longest row to size their work; the padded width bounds it
        # without a host read (the batch is padded to its longest row, so they are equal).
        self.longest = mask.shape[1]
        self.groups: _Groups | None = None

    def attention(self, q: Tensor, k: Tensor, v: Tensor, heads: int, dropout: float, scale: float):
        kernel = varlen_kernel(q, dropout)
        if kernel is not None:
            q_, k_, v_ = (t.view(t.shape[0], heads, -1) for t in (q, k, v))
            out = kernel(q_, k_, v_, self.cu_seqlens, self.longest, dropout, scale)
            return out.reshape(q.shape[0], -1)
        if self.groups is None:
            self.groups = _Groups(self.mask, self.attention_tokens)
        return self.groups.attention(q, k, v, heads, dropout, scale)


PACKED_FORWARD = "packed_forward"


def packed_layer(layer: Any, x: Tensor, groups: _Layout) -> Tensor:
    """One BertLayer on packed tokens [tokens, hidden]: what the layer's own forward computes
    for the real positions of the padded batch."""
    attention = layer.attention.self
    context = groups.attention(
        attention.query(x),
        attention.key(x),
        attention.value(x),
        attention.num_attention_heads,
        attention.dropout.p if attention.training else 0.0,
        attention.scaling,
    )
    out = layer.attention.output
    x = out.LayerNorm(out.dropout(out.dense(context)) + x)
    ffn = layer.output
    return ffn.LayerNorm(ffn.dropout(ffn.dense(layer.intermediate(x))) + x)


def bert_token_embeddings(
    model: Any, features: dict[str, Tensor], attention_tokens: int = 512, checkpoint: bool = False
) -> Tensor:
    """Last hidden states [batch, length, hidden] of `model` (a supported BertModel).
    `checkpoint`: recompute each layer in the backward pass instead of keeping its activations
    (the recomputation restores the RNG state, so dropout draws repeat)."""
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
    groups = _Layout(mask, attention_tokens)
    for layer in model.encoder.layer:
        # A layer sharded by FSDP carries `packed_forward` (registered as one of its forward
        # methods, so its parameters are gathered around the call); others run it directly.
        step = getattr(layer, PACKED_FORWARD, None)
        run = step if step is not None else partial(packed_layer, layer)
        if checkpoint:
            x = torch.utils.checkpoint.checkpoint(run, x, groups, use_reentrant=False)
        else:
            x = run(x, groups)
    hidden = x.new_zeros(batch * length, x.shape[-1]).index_copy(0, real, x)
    return hidden.view(batch, length, -1)
