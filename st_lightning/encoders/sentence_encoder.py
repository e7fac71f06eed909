"""SentenceEncoder: transformer + pooling (+ dense) (+ normalize), as one `nn.Module`."""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from st_lightning.encoders import unpadded
from st_lightning.encoders.adapters import base_model
from st_lightning.encoders.dense import Dense
from st_lightning.encoders.pooling import Pooling

log = logging.getLogger(__name__)

SimilarityFn = Literal["cosine", "dot", "euclidean", "manhattan"]


class SentenceEncoder(nn.Module):
    """Maps texts to fixed-size embeddings; loads and saves the sentence-transformers layout.

    Args:
        transformer: a Hugging Face backbone whose first output is the token embeddings.
        tokenizer: its tokenizer.
        pooling: how token embeddings become one vector.
        dense: optional projections applied after pooling, in order.
        normalize: L2-normalize the output (what sentence-transformers' Normalize module does).
        max_seq_length: longer inputs are truncated to this many tokens.
        do_lower_case: lowercase texts before tokenizing.
        prompts: named prefixes, e.g. `{"query": "query: "}`.
        default_prompt_name: the prompt used when none is given.
        similarity_fn_name: the similarity the model was trained for.
        unpadded: run backbones that `st_lightning.encoders.unpadded` supports (BERT family)
            on real tokens only; the function computed is the same, with less work.
        attention_tokens: with `unpadded`, attention runs in length-sorted groups of at most
            this many token positions ("auto": 512 on CPU, 16384 on accelerators; None: one
            group).
        gradient_checkpointing: in training, keep only each layer's input and recompute the
            layer in the backward pass (less activation memory, about a third more compute).
            The recomputation replays the layer's dropout draws, so losses and gradients are
            those of the plain forward, with gradient caching too.
        lora: LoRA adapter settings (`st_lightning.encoders.adapters.LoraSettings` or a dict
            of them): only the adapters train; saved in the adapter layout (or merged).
        append_eos: make the tokenizer end every text with its EOS token (for last-token
            pooling with a tokenizer that has an EOS but does not append it); saved with the
            tokenizer, so sentence-transformers tokenizes the same way.
    """

    def __init__(
        self,
        transformer: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        pooling: Pooling | None = None,
        dense: Sequence[Dense] = (),
        normalize: bool = False,
        max_seq_length: int | None = None,
        do_lower_case: bool = False,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        similarity_fn_name: SimilarityFn | str = "cosine",
        unpadded: bool = True,
        attention_tokens: int | Literal["auto"] | None = "auto",
        gradient_checkpointing: bool = False,
        lora: Any = None,
        append_eos: bool = False,
    ) -> None:
        super().__init__()
        if append_eos:
            append_eos_token(tokenizer)
        self.append_eos = append_eos
        if lora is not None:
            from st_lightning.encoders.adapters import add_lora

            transformer = add_lora(transformer, lora)  # type: ignore[assignment]
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.pooling = pooling or Pooling(transformer.config.hidden_size)
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token  # decoder tokenizers often have no pad
        if "lasttoken" in self.pooling.modes:
            check_last_token(tokenizer)
        self.dense = nn.ModuleList(dense)
        self.normalize = normalize
        limit = min(
            tokenizer.model_max_length,
            getattr(transformer.config, "max_position_embeddings", 10**9),
        )
        self.max_seq_length = int(max_seq_length or min(limit, 512))
        self.do_lower_case = do_lower_case
        self.prompts = dict(prompts or {})
        if default_prompt_name is not None and default_prompt_name not in self.prompts:
            raise ValueError(
                f"default_prompt_name {default_prompt_name!r} is not one of the prompts "
                f"{sorted(self.prompts)}."
            )
        self.default_prompt_name = default_prompt_name
        if similarity_fn_name not in ("cosine", "dot", "euclidean", "manhattan"):
            raise ValueError(
                f"Unknown similarity_fn_name {similarity_fn_name!r}; "
                "choose cosine, dot, euclidean or manhattan."
            )
        self.similarity_fn_name = similarity_fn_name
        # How the forward runs, not what it computes: not saved with the model.
        self.unpadded = unpadded
        self.attention_tokens = attention_tokens
        # Decoders build a key/value cache by default; embedding never reads it back, and with
        # checkpointing transformers would warn in every run before switching it off itself.
        self.uses_cache = bool(getattr(transformer.config, "use_cache", False)) and (
            "use_cache" in inspect.signature(base_model(transformer).forward).parameters
        )
        self.gradient_checkpointing = False
        if gradient_checkpointing:
            self.set_gradient_checkpointing(True)

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Switch activation checkpointing of the backbone's layers on or off."""
        if enabled:
            if not getattr(self.transformer, "supports_gradient_checkpointing", False):
                raise ValueError(
                    f"{type(self.transformer).__name__} does not support gradient checkpointing; "
                    "set gradient_checkpointing=false (or use gradient caching, "
                    "model.mini_batch_size, to bound memory)."
                )
            # Non-reentrant checkpointing: works with frozen inputs (adapters) and keeps the RNG.
            self.transformer.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False}
            )
        elif self.transformer.is_activation_checkpointing:
            self.transformer.activation_checkpointing_disable()
        self.gradient_checkpointing = enabled

    # ---- loading and saving -------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
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
        """Load a Hub id or folder: a sentence-transformers model, or a plain transformer (which
        gets mean pooling). Arguments that are not None override what the folder says; see
        `st_lightning.encoders.st_format.load_encoder`."""
        settings = {k: v for k, v in locals().items() if k not in ("cls", "name_or_path")}
        from st_lightning.encoders.st_format import load_encoder

        return load_encoder(name_or_path, **settings)

    def save_pretrained(
        self, path: str | os.PathLike, model_card: str | None = None, merge_adapters: bool = False
    ) -> Path:
        """Write the sentence-transformers v2-v5 layout to `path` atomically; returns the path.
        With a LoRA adapter: the adapter layout (naming the base model), or with
        `merge_adapters` the merged full weights."""
        from st_lightning.encoders.st_format import save_encoder

        return save_encoder(self, path, model_card=model_card, merge_adapters=merge_adapters)

    @property
    def has_adapter(self) -> bool:
        from st_lightning.encoders.adapters import is_adapted

        return is_adapted(self.transformer)

    # ---- the model ----------------------------------------------------------------------------
    @property
    def dense_layers(self) -> list[Dense]:
        return [cast(Dense, layer) for layer in self.dense]

    @property
    def embedding_dimension(self) -> int:
        layers = self.dense_layers
        return layers[-1].linear.out_features if layers else self.pooling.output_dimension

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def resolve_prompt(self, prompt_name: str | None = None, prompt: str | None = None) -> str:
        if prompt is not None:
            return prompt
        name = prompt_name if prompt_name is not None else self.default_prompt_name
        if name is None:
            return ""
        if name not in self.prompts:
            raise ValueError(
                f"Unknown prompt_name {name!r}; this model has {sorted(self.prompts)}."
            )
        return self.prompts[name]

    def tokenize(self, texts: Sequence[str], prompt: str = "") -> dict[str, Tensor]:
        """Tokenize `texts` (after the prompt prefix) into padded tensors on the CPU."""
        check_texts(texts)
        batch = [prompt + t for t in texts] if prompt else list(texts)
        if self.do_lower_case:
            batch = [t.lower() for t in batch]
        features = dict(
            self.tokenizer(
                batch,
                padding=True,
                truncation="longest_first",
                max_length=self.max_seq_length,
                # Right padding whatever the tokenizer's default, as training batches are
                # collated: length grouping trims rows from the right, and a causal backbone's
                # real tokens then never follow padding.
                padding_side="right",
                return_tensors="pt",
            )
        )
        if prompt and not self.pooling.include_prompt:
            # Prompt tokens without the closing special token, as sentence-transformers counts them.
            features["prompt_length"] = len(self.tokenizer(prompt)["input_ids"]) - 1
        return features

    def runs_unpadded(self) -> bool:
        """Whether the per-token layers run on real tokens only (switched on, and a backbone
        that `unpadded` supports)."""
        return bool(self.unpadded) and unpadded.supports(base_model(self.transformer))

    def token_embeddings(self, features: dict[str, Tensor]) -> Tensor:
        inputs = {k: v for k, v in features.items() if k != "prompt_length"}
        if self.runs_unpadded():
            ids = inputs["input_ids"]
            budget = unpadded.resolve_budget(self.attention_tokens, ids.device) or ids.numel()
            checkpoint = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
            backbone = base_model(self.transformer)  # adapters sit inside its linear layers
            return unpadded.bert_token_embeddings(backbone, inputs, budget, checkpoint)
        if self.uses_cache:
            inputs["use_cache"] = False  # type: ignore[assignment]  # no key/value cache for embeddings
        return self.transformer(**inputs, return_dict=True)[0]

    def unused_parameters(self) -> list[str]:
        """Names of the trainable parameters that take no part in the embeddings (BERT's
        pooler, for one); see `st_lightning.encoders.probe`."""
        from st_lightning.encoders.probe import unused_parameters

        return unused_parameters(self)

    def freeze_unused(self) -> list[str]:
        """Stop training the parameters that `unused_parameters` finds; returns their names.
        They stay in the model and are saved with it, unchanged."""
        names = self.unused_parameters()
        params = dict(self.named_parameters())
        for name in names:
            params[name].requires_grad_(False)
        return names

    def head(self, tokens: Tensor, features: dict[str, Tensor]) -> Tensor:
        """Token embeddings -> sentence embeddings: pooling, dense layers, normalization."""
        x = self.pooling(tokens, features["attention_mask"], int(features.get("prompt_length", 0)))
        for layer in self.dense:
            x = layer(x)
        return F.normalize(x, p=2, dim=-1) if self.normalize else x

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        """Sentence embeddings (batch, dim) for tokenized `features`."""
        return self.head(self.token_embeddings(features), features)

    def forward_layers(self, features: dict[str, Tensor]) -> list[Tensor]:
        """Sentence embeddings pooled from every hidden state: the embedding layer's output
        first, the last layer's (equal to `forward`) last. For the layer-wise losses."""
        inputs = {k: v for k, v in features.items() if k != "prompt_length"}
        out = self.transformer(**inputs, output_hidden_states=True, return_dict=True)
        return [self.head(hidden, features) for hidden in out.hidden_states]

    # ---- inference ----------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(
        self,
        texts: str | Sequence[str],
        batch_size: int = 32,
        prompt_name: str | None = None,
        prompt: str | None = None,
        convert_to: Literal["numpy", "tensor"] = "numpy",
        normalize_embeddings: bool = False,
        precision: Literal["float32", "bfloat16"] = "float32",
        device: str | torch.device | None = None,
    ) -> np.ndarray | Tensor:
        """Embed `texts`, longest first to waste little padding, returned in the input order.

        A single string gives one vector; an empty list gives an empty (0, dim) array.
        """
        single = isinstance(texts, str)
        items: list[str] = [texts] if single else list(texts)  # type: ignore[list-item]
        check_texts(items)
        prefix = self.resolve_prompt(prompt_name, prompt)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if device is not None:
            self.to(device)
        was_training = self.training
        self.eval()
        order = np.argsort([-len(t) for t in items], kind="stable")
        dev = self.device
        autocast = (
            torch.autocast(dev.type, dtype=torch.bfloat16)
            if precision == "bfloat16"
            else nullcontext()
        )
        chunks: list[Tensor] = []
        with autocast:
            for start in range(0, len(items), batch_size):
                batch = [items[i] for i in order[start : start + batch_size]]
                features = self.tokenize(batch, prefix)
                features = {
                    k: v.to(dev) if isinstance(v, Tensor) else v for k, v in features.items()
                }
                chunks.append(self(features).float())
        self.train(was_training)
        if chunks:
            out = torch.empty((len(items), chunks[0].shape[1]), device=chunks[0].device)
            out[torch.as_tensor(order, device=out.device)] = torch.cat(chunks)
        else:
            out = torch.empty((0, self.embedding_dimension))
        if normalize_embeddings:
            out = F.normalize(out, p=2, dim=-1)
        if single:
            out = out[0]
        return out.cpu().numpy() if convert_to == "numpy" else out


def append_eos_token(tokenizer: PreTrainedTokenizerBase) -> None:
    """Make `tokenizer` end every text (and each text of a pair) with its EOS token, keeping a
    leading BOS it adds; a tokenizer that already appends it is left as it is."""
    eos, eos_id = tokenizer.eos_token, tokenizer.eos_token_id
    if eos is None or eos_id is None:
        raise ValueError(
            f"append_eos needs an EOS token, and the tokenizer ({type(tokenizer).__name__}) has "
            "none; set tokenizer.eos_token, or use a pooling mode other than lasttoken."
        )
    ids = tokenizer("a")["input_ids"]
    if ids and ids[-1] == eos_id:
        return
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(
            f"append_eos works with fast (tokenizers-backed) tokenizers; "
            f"{type(tokenizer).__name__} is not one."
        )
    from tokenizers.processors import TemplateProcessing

    bos, bos_id = tokenizer.bos_token, tokenizer.bos_token_id
    lead = f"{bos} " if bos is not None and ids and ids[0] == bos_id else ""
    special = [(eos, eos_id)] + ([(bos, bos_id)] if lead else [])
    backend.post_processor = TemplateProcessing(
        single=f"{lead}$A {eos}", pair=f"{lead}$A {eos} $B {eos}", special_tokens=special
    )


def check_last_token(tokenizer: PreTrainedTokenizerBase) -> None:
    """Last-token pooling reads the token that ends each text: an EOS (or [SEP]) the tokenizer
    appends. Without any, it would read the text's last word piece."""
    ids = tokenizer("a")["input_ids"]
    ends_special = bool(ids) and ids[-1] in set(tokenizer.all_special_ids)
    if ends_special:
        return
    if tokenizer.eos_token is None:
        raise ValueError(
            f"Last-token pooling needs texts that end with an EOS token, but the tokenizer "
            f"({type(tokenizer).__name__}) has no EOS token and ends texts with an ordinary "
            "token. Use a tokenizer with an EOS token that it appends, or another pooling mode."
        )
    log.warning(
        "The tokenizer does not append its EOS token %r: last-token pooling reads each text's "
        "last word piece. Embedding models trained this way usually append EOS: set "
        "append_eos=true (model.encoder.append_eos).",
        tokenizer.eos_token,
    )


def check_texts(texts: Sequence[object]) -> None:
    """Fail with the index and type of the first item that is not a string."""
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(
                f"Texts must be strings; item {i} is {type(t).__name__} ({t!r:.60}). "
                "Convert or drop it before encoding."
            )
