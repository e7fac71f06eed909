"""transformers internals used by the unpadded BERT forward, each checked here at import.

`st_lightning.encoders.unpadded` runs a `BertModel`'s parts itself (embeddings, each layer's
query/key/value projections, attention output, feed-forward), so it relies on their attribute
names, on `BertSelfAttention.scaling`, and on `config._attn_implementation`.
"""

from __future__ import annotations

import transformers
from transformers import PretrainedConfig
from transformers.models.bert import modeling_bert as bert

from st_lightning.compat import require

_V = transformers.__version__
BERT_PARTS: dict[type, list[str]] = {
    bert.BertModel: ["embeddings", "encoder"],
    bert.BertEmbeddings: [
        "word_embeddings",
        "position_embeddings",
        "token_type_embeddings",
        "LayerNorm",
        "dropout",
    ],
    bert.BertEncoder: ["layer"],
    bert.BertLayer: ["attention", "intermediate", "output"],
    bert.BertAttention: ["self", "output"],
    bert.BertSelfAttention: ["query", "key", "value", "num_attention_heads", "scaling", "dropout"],
    bert.BertSelfOutput: ["dense", "LayerNorm", "dropout"],
    bert.BertOutput: ["dense", "LayerNorm", "dropout"],
}
for _cls, _names in BERT_PARTS.items():
    require("transformers", _V, _cls, _names)
require("transformers", _V, PretrainedConfig, ["_attn_implementation"])


def attention_implementation(config: PretrainedConfig) -> str:
    """The attention kernel a loaded model uses ("eager", "sdpa", "flash_attention_2", ...)."""
    return str(getattr(config, "_attn_implementation", None) or "eager")
