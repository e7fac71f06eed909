"""Which trainable parameters of an encoder take no part in its embeddings.

A backbone loaded with `AutoModel` can carry heads the pooling never reads (BERT's pooler, for
one). DDP refuses a step where a trainable parameter got no gradient, and
`find_unused_parameters` would pay a graph traversal on every step to allow it, so
`EmbeddingModule` freezes them once, found here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from st_lightning.encoders.sentence_encoder import SentenceEncoder


def unused_parameters(encoder: SentenceEncoder) -> list[str]:
    """Names of `encoder`'s trainable parameters that its embeddings do not depend on.

    Found by one small forward in eval mode (no dropout, so no random numbers drawn, and no
    gradient checkpointing, which would hide the checkpointed layers' weights from the graph),
    followed through the autograd graph to its leaves; nothing is computed backwards.
    """
    was_training = encoder.training
    encoder.eval()
    try:
        features = encoder.tokenize(["a probe sentence", "a"])
        device = encoder.device
        features = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in features.items()}
        with torch.enable_grad():
            reached = graph_leaves(encoder(features))
    finally:
        encoder.train(was_training)
    return [n for n, p in encoder.named_parameters() if p.requires_grad and id(p) not in reached]


def graph_leaves(output: Tensor) -> set[int]:
    """ids of the tensors whose gradients a backward pass from `output` would accumulate."""
    found: set[int] = set()
    seen: set[int] = set()
    stack = [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        leaf = getattr(node, "variable", None)  # an AccumulateGrad node holds its tensor
        if leaf is not None:
            found.add(id(leaf))
        stack.extend(next_node for next_node, _ in node.next_functions)
    return found
