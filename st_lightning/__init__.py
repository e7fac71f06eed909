"""st_lightning: train sentence-embedding models on PyTorch Lightning, composed by Hydra.

`st_lightning.EmbeddingModule` is loaded on first use, so the encoder side
(`st_lightning.encoders`) imports without Lightning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from st_lightning.version import __version__

if TYPE_CHECKING:
    from st_lightning.module import EmbeddingModule

__all__ = ["EmbeddingModule", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "EmbeddingModule":
        from st_lightning.module import EmbeddingModule

        return EmbeddingModule
    raise AttributeError(f"module 'st_lightning' has no attribute {name!r}")
