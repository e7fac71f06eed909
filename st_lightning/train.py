"""Train from a Hydra config: python -m st_lightning.train +experiment=nli_triplet [overrides].

compose (Hydra) -> check (`st_lightning.config`) -> instantiate -> build (`st_lightning.run`)
-> fit -> export. The run builder is the same one Python and notebooks use.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from st_lightning.config import check_config, instantiate_named, monitors
from st_lightning.export import read_checkpoint
from st_lightning.run import Run, build
from st_lightning.utils.console import quiet_third_party

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Check, build, fit and export the run `cfg` describes; returns the final logged metrics."""
    quiet_third_party()
    check_config(cfg)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path not in (None, "last"):
        read_checkpoint(ckpt_path)  # a missing or damaged file fails here, before loading
    run = build_run(cfg)
    metrics = run.fit(ckpt_path, check=ckpt_path == "last")
    run.export(**OmegaConf.to_container(cfg.export, resolve=True))  # type: ignore[arg-type]
    return metrics


def build_run(cfg: DictConfig) -> Run:
    """Seed, instantiate every config node, and build the run (writes `config.yaml`)."""
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    sweep = sweep_job()
    if sweep is not None:
        group, job, overrides = sweep
        with open_dict(cfg):
            cfg.sweep = overrides  # the job's values, in the config every logger records
            wandb = (cfg.get("logger") or {}).get("wandb")
            if wandb is not None:  # a sweep's jobs: one W&B group, a run per job
                wandb.group = wandb.get("group") or group
                wandb.name = f"{wandb.get('name') or cfg.experiment_name}-{job}"
    resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    L.seed_everything(cfg.seed, workers=True)

    encoder = instantiate(cfg.model.encoder)
    # `shared_loss`: one loss for every dataset (a mix of many), else one per dataset name.
    shared = cfg.get("shared_loss")
    losses = instantiate(shared) if shared is not None else instantiate_named(cfg.losses)
    model_cfg = OmegaConf.masked_copy(cfg.model, [k for k in cfg.model if k != "encoder"])
    module = instantiate(model_cfg, encoder=encoder, losses=losses, _convert_="all")
    data = instantiate(
        cfg.data,
        tokenizer=encoder.tokenizer,
        max_seq_length=encoder.max_seq_length,
        _convert_="all",
    )
    trainer = instantiate(cfg.trainer, _partial_=True, _convert_="all")
    return build(
        module,
        data,
        output_dir,
        evaluators=instantiate_named(cfg.get("evaluator")),
        evaluation=OmegaConf.to_container(cfg.evaluation, resolve=True),  # type: ignore[arg-type]
        monitors=monitors(cfg),
        callbacks=list(instantiate_named(cfg.get("callbacks")).values()),
        loggers=list(instantiate_named(cfg.get("logger")).values()),
        config=resolved,
        base_model=cfg.model.encoder.get("name_or_path"),
        **trainer.keywords,
    )


def sweep_job() -> tuple[str, int, dict[str, Any]] | None:
    """In a Hydra multirun job: (the sweep's name, the job's number, the job's overrides as
    key -> value); None in a single run. The name is the sweep directory's, e.g.
    `nli_triplet-2026-12-03_14-00-00`, shared by all jobs of one sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    sweep_dir = Path(hydra_cfg.sweep.dir)
    name = f"{sweep_dir.parent.name}-{sweep_dir.name}"
    overrides: dict[str, Any] = {}
    for item in hydra_cfg.overrides.task:
        key, _, value = item.partition("=")
        if key.lstrip("+~") in ("experiment", "hparams_search"):
            continue
        overrides[key.lstrip("+~")] = yaml.safe_load(value) if value else None
    return name, int(hydra_cfg.job.num), overrides


def metric_value(metrics: dict[str, float], name: str | None) -> float | None:
    if name is None:
        return None
    if name not in metrics:
        raise KeyError(f"optimized_metric {name!r} was not logged; logged: {sorted(metrics)}.")
    return metrics[name]


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    try:
        value = metric_value(train(cfg), cfg.get("optimized_metric"))
        if value is not None:
            log.info("optimized_metric %s = %.6f", cfg.optimized_metric, value)
        return value
    finally:
        try:
            import wandb

            if wandb.run is not None:
                wandb.finish()
        except ImportError:
            pass


def cli() -> None:
    """The command line: `--help` lists experiments and groups (Hydra's own help is
    `--hydra-help`); anything else is a Hydra run."""
    import sys

    from st_lightning.help import help_text, wants_help

    if wants_help(sys.argv[1:]):
        print(help_text())
        return
    torch.set_float32_matmul_precision("high")
    main()


if __name__ == "__main__":
    cli()
