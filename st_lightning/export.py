"""Turn a training checkpoint into a sentence-transformers model folder.

    python -m st_lightning.export CHECKPOINT OUTPUT_DIR

Any checkpoint of an st_lightning run exports, however the run was built (the command line,
`st_lightning.run.build`, a notebook): it describes its encoder's structure, from which the
encoder is rebuilt before its weights are loaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from st_lightning.encoders import SentenceEncoder
from st_lightning.encoders.description import EncoderDescription


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
        raise ValueError(f"Checkpoint {str(path)!r} was not written by st_lightning.")
    return checkpoint


def encoder_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The encoder's weights in a training checkpoint, with the module prefix removed."""
    prefix = "encoder."
    state = checkpoint["state_dict"]
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def encoder_from_checkpoint(path: str | Path) -> SentenceEncoder:
    """The trained encoder of a checkpoint: rebuilt from the description the checkpoint holds
    (`EncoderDescription`), with the checkpoint's weights."""
    checkpoint = read_checkpoint(path)
    record = checkpoint["st_lightning"]
    if record.get("encoder") is not None:
        encoder = EncoderDescription.from_dict(record["encoder"]).build()
    elif record.get("config") is not None:  # checkpoints written before the description
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        encoder = instantiate(OmegaConf.create(record["config"])["model"]["encoder"])
    else:
        raise ValueError(f"Checkpoint {str(path)!r} does not describe its encoder.")
    missing, unexpected = encoder.load_state_dict(encoder_state(checkpoint), strict=False)
    missing = [k for k in missing if "pooler" not in k]  # unused pooler weights of some backbones
    if missing or unexpected:
        raise ValueError(
            f"Checkpoint {str(path)!r} does not fit the encoder it describes: "
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
