"""st_lightning: train sentence-embedding models on PyTorch Lightning, composed by Hydra."""

__version__ = "0.1.0"

from st_lightning.module import EmbeddingModule  # noqa: E402

__all__ = ["EmbeddingModule", "__version__"]
