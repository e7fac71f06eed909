"""st_lightning: train sentence-embedding models on PyTorch Lightning, composed by Hydra."""

__version__ = "0.1.0"
