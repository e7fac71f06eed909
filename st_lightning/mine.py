"""Mine hard negatives from a Hydra config: python -m st_lightning.mine dataset.path=...

check (settings and columns, before any model loads) -> embed the corpus and queries (cached,
shared among torchrun processes) -> search -> filter -> write the dataset folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import hydra
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from st_lightning.config import check_fields
from st_lightning.data.sources import DatasetSpec, load_source
from st_lightning.mining.folder import save_mined
from st_lightning.mining.spec import HardNegatives

log = logging.getLogger(__name__)


def mine(cfg: DictConfig) -> Path | None:
    """Mine as `cfg` says; returns the folder written (None on processes other than 0)."""
    plain: dict[str, Any] = {
        key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("dataset", "mining")
    }
    plain["output_dir"], plain["overwrite"] = cfg.output_dir, cfg.get("overwrite", False)
    problems = check_fields(plain["dataset"], DatasetSpec, "dataset")
    problems += check_fields(plain["mining"], HardNegatives, "mining")
    if problems:
        raise ValueError("Invalid mining config:\n  " + "\n  ".join(problems))
    output = Path(plain["output_dir"])
    if output.exists() and any(output.iterdir()) and not plain.get("overwrite"):
        raise FileExistsError(
            f"{output} already holds files; set output_dir to a new folder or overwrite=true."
        )
    spec = DatasetSpec(**plain["dataset"])
    settings = HardNegatives.of(plain["mining"])
    rows = load_source(spec, "dataset")
    started = _start_process_group()
    try:
        mined, stats = settings.mine(rows)
        if dist.is_initialized() and dist.get_rank() != 0:
            return None
        source = spec.path + (f" ({spec.name})" if spec.name else "") + f", split {spec.split}"
        folder = save_mined(
            mined,
            output,
            settings=settings.record(),
            stats=stats,
            source=source,
            model=settings.model,
            overwrite=bool(plain.get("overwrite")),
        )
        log.info("Wrote %d rows to %s", len(mined), folder)
        return folder
    finally:
        if started:
            dist.destroy_process_group()


def _start_process_group() -> bool:
    """Join the torchrun launch, if there is one (gloo on CPU, nccl on GPUs)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


@hydra.main(config_path="../conf", config_name="mine", version_base="1.3")
def main(cfg: DictConfig) -> None:
    mine(cfg)


if __name__ == "__main__":
    main()
