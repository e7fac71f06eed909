"""Pooling: token embeddings -> one sentence embedding, in the modes sentence-transformers knows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import Tensor, nn

PoolingMode = Literal["mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"]
POOLING_MODES: tuple[str, ...] = get_args(PoolingMode)

# The boolean keys of the v2-v5 `1_Pooling/config.json`, by mode, in the order in which
# sentence-transformers concatenates several modes.
LEGACY_KEYS: dict[str, str] = {
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "mean": "pooling_mode_mean_tokens",
    "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
    "weightedmean": "pooling_mode_weightedmean_tokens",
    "lasttoken": "pooling_mode_lasttoken",
}


class Pooling(nn.Module):
    """Pools token embeddings over the attention mask; several modes are concatenated in order.

    Args:
        embedding_dimension: width of the token embeddings.
        pooling_mode: one mode or a list of modes (their outputs are concatenated).
        include_prompt: when False, prompt tokens are left out of the pooled tokens.
    """

    def __init__(
        self,
        embedding_dimension: int,
        pooling_mode: PoolingMode | Sequence[PoolingMode] | str | Sequence[str] = "mean",
        include_prompt: bool = True,
    ) -> None:
        super().__init__()
        modes = [pooling_mode] if isinstance(pooling_mode, str) else list(pooling_mode)
        bad = [m for m in modes if m not in POOLING_MODES]
        if bad or not modes:
            raise ValueError(
                f"Unknown pooling mode {bad or modes!r}; choose from {', '.join(POOLING_MODES)}."
            )
        self.embedding_dimension = embedding_dimension
        self.modes: list[str] = modes
        self.include_prompt = include_prompt

    @property
    def output_dimension(self) -> int:
        return self.embedding_dimension * len(self.modes)

    def forward(
        self, token_embeddings: Tensor, attention_mask: Tensor, prompt_length: int = 0
    ) -> Tensor:
        # Rows may be padded on either side (decoder tokenizers often pad on the left): each
        # row's first real position is where its mask first turns 1.
        start = first_real(attention_mask)
        mask = attention_mask
        if prompt_length and not self.include_prompt:  # the prompt leads each row's real tokens
            positions = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
            mask = mask.masked_fill(positions < (start + prompt_length).unsqueeze(1), 0)
        pooled = [pool(mode, token_embeddings, mask, start) for mode in self.modes]
        return torch.cat(pooled, -1)

    def config(self) -> dict[str, object]:
        """The v2-v5 `1_Pooling/config.json` (the layout every sentence-transformers 3-6 reads).

        That layout has one flag per mode and concatenates them in the fixed order of
        `LEGACY_KEYS`; modes in any other order are written with the v6 keys instead, which
        only sentence-transformers 6 reads, rather than silently reordering the output.
        """
        if self.modes != [m for m in LEGACY_KEYS if m in self.modes]:
            return {
                "embedding_dimension": self.embedding_dimension,
                "pooling_mode": self.modes,
                "include_prompt": self.include_prompt,
            }
        flags = {key: mode in self.modes for mode, key in LEGACY_KEYS.items()}
        return {
            "word_embedding_dimension": self.embedding_dimension,
            **flags,
            "include_prompt": self.include_prompt,
        }

    @classmethod
    def from_config(cls, config: dict) -> Pooling:
        """Read either the v2-v5 boolean keys or the v6 `pooling_mode`/`embedding_dimension`."""
        dim = config.get("embedding_dimension", config.get("word_embedding_dimension"))
        if dim is None:
            raise ValueError(f"Pooling config has no embedding dimension: {config}")
        if "pooling_mode" in config:
            modes = config["pooling_mode"]
        else:
            modes = [mode for mode, key in LEGACY_KEYS.items() if config.get(key)]
        return cls(int(dim), modes, include_prompt=config.get("include_prompt", True))


def first_real(mask: Tensor) -> Tensor:
    """Each row's first position with mask 1 (0 for right padding, or a row without any)."""
    return mask.to(torch.int32).argmax(dim=1)


def pool(mode: str, tokens: Tensor, mask: Tensor, start: Tensor | None = None) -> Tensor:
    """One pooling mode over `tokens` (batch, seq, dim) and `mask` (batch, seq), padded on
    either side. `start`: each row's first real position before any prompt was masked out
    (weighted mean counts positions from it); taken from `mask` when not given."""
    acc_dtype = torch.float32 if tokens.dtype in (torch.float16, torch.bfloat16) else tokens.dtype
    m = mask.unsqueeze(-1).to(acc_dtype)
    rows = torch.arange(tokens.shape[0], device=tokens.device)
    if mode == "cls":  # the first pooled token: [CLS] for right-padded encoders
        return tokens[rows, first_real(mask)]
    if mode == "max":
        return tokens.masked_fill(m == 0, float("-inf")).max(dim=1).values
    if mode in ("mean", "mean_sqrt_len_tokens"):
        total = (tokens * m).sum(dim=1, dtype=acc_dtype)
        count = m.sum(dim=1).clamp(min=1e-9)
        return (total / (count if mode == "mean" else count.sqrt())).to(tokens.dtype)
    if mode == "weightedmean":
        start = first_real(mask) if start is None else start
        positions = torch.arange(1, tokens.shape[1] + 1, device=tokens.device, dtype=acc_dtype)
        w = m * (positions.view(1, -1) - start.view(-1, 1).to(acc_dtype)).unsqueeze(-1)
        total = (tokens * w).sum(dim=1, dtype=acc_dtype)
        return (total / w.sum(dim=1).clamp(min=1e-9)).to(tokens.dtype)
    if mode == "lasttoken":  # the last pooled token: [EOS] or the text's end for decoders
        seq = mask.shape[1]
        from_end = mask.to(torch.int32).flip(1).argmax(dim=1)
        last = seq - 1 - from_end
        # A row without pooled tokens gives zeros, as sentence-transformers does.
        return tokens[rows, last] * mask[rows, last].unsqueeze(-1).to(tokens.dtype)
    raise ValueError(f"Unknown pooling mode {mode!r}; choose from {', '.join(POOLING_MODES)}.")
