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
        if prompt_length and not self.include_prompt:
            attention_mask = attention_mask.clone()
            attention_mask[:, :prompt_length] = 0  # right padding: the prompt leads every row
        return torch.cat([pool(mode, token_embeddings, attention_mask) for mode in self.modes], -1)

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


def pool(mode: str, tokens: Tensor, mask: Tensor) -> Tensor:
    """One pooling mode over right-padded `tokens` (batch, seq, dim) and `mask` (batch, seq)."""
    acc_dtype = torch.float32 if tokens.dtype in (torch.float16, torch.bfloat16) else tokens.dtype
    m = mask.unsqueeze(-1).to(acc_dtype)
    if mode == "cls":
        return tokens[:, 0]
    if mode == "max":
        return tokens.masked_fill(m == 0, float("-inf")).max(dim=1).values
    if mode in ("mean", "mean_sqrt_len_tokens"):
        total = (tokens * m).sum(dim=1, dtype=acc_dtype)
        count = m.sum(dim=1).clamp(min=1e-9)
        return (total / (count if mode == "mean" else count.sqrt())).to(tokens.dtype)
    if mode == "weightedmean":
        positions = torch.arange(1, tokens.shape[1] + 1, device=tokens.device, dtype=acc_dtype)
        w = m * positions.view(1, -1, 1)
        total = (tokens * w).sum(dim=1, dtype=acc_dtype)
        return (total / w.sum(dim=1).clamp(min=1e-9)).to(tokens.dtype)
    if mode == "lasttoken":
        last = (mask.sum(dim=1) - 1).clamp(min=0).long()
        return tokens[torch.arange(tokens.shape[0], device=tokens.device), last]
    raise ValueError(f"Unknown pooling mode {mode!r}; choose from {', '.join(POOLING_MODES)}.")
