"""Turn a training checkpoint into a sentence-transformers model folder.

    python -m st_lightning.export CHECKPOINT OUTPUT_DIR

The checkpoint must come from `st_lightning.train` (it records the run's config, from which the
encoder is rebuilt before its weights are loaded).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from st_lightning.encoders import SentenceEncoder


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely (`weights_only`), with clear errors for damaged files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {str(path)!r} does not exist.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for damaged files
        raise ValueError(
            f"Checkpoint {str(path)!r} cannot be read ({type(err).__name__}: {str(err)[:200]}); "
            "it is truncated, damaged or not a checkpoint. Use the previous checkpoint (last.ckpt "
            "or an earlier top-k one)."
        ) from err
    if "state_dict" not in checkpoint or "st_lightning" not in checkpoint:
        raise ValueError(f"Checkpoint {str(path)!r} was not written by st_lightning.train.")
    return checkpoint


def encoder_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The encoder's weights in a training checkpoint, with the module prefix removed."""
    prefix = "encoder."
    state = checkpoint["state_dict"]
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def encoder_from_checkpoint(path: str | Path) -> SentenceEncoder:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    checkpoint = read_checkpoint(path)
    config = checkpoint["st_lightning"].get("config")
    if config is None:
        raise ValueError(f"Checkpoint {str(path)!r} has no run config to rebuild the encoder from.")
    encoder = instantiate(OmegaConf.create(config)["model"]["encoder"])
    state = encoder_state(checkpoint)
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    missing = [k for k in missing if "pooler" not in k]  # unused pooler weights of some backbones
    if missing or unexpected:
        raise ValueError(
            f"Checkpoint {str(path)!r} does not fit the encoder of its config: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
    return encoder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("output")
    args = parser.parse_args(argv)
    encoder = encoder_from_checkpoint(args.checkpoint)
    path = encoder.save_pretrained(args.output)
    print(f"Saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
