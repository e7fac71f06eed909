"""Every experiment and sweep composes, and every _target_ binds its arguments."""

from __future__ import annotations

import importlib
import inspect

import pytest
from conftest import CONF, compose_cfg
from omegaconf import DictConfig, ListConfig, OmegaConf

from st_lightning.config import check_config

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
SWEEPS = sorted(p.stem for p in (CONF / "hparams_search").glob("*.yaml"))


def resolve_target(path: str):
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        owner_module, _, owner = module.rpartition(".")
        return getattr(getattr(importlib.import_module(owner_module), owner), name)


def walk_targets(node, where="cfg"):
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield where, node
        for key in node:
            if key == "hydra":
                continue
            yield from walk_targets(node._get_node(key), f"{where}.{key}")
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            yield from walk_targets(item, f"{where}[{i}]")


def check_binds(cfg: DictConfig) -> int:
    """The run's own check (`st_lightning.config.check_config`: keys and types from the
    signatures) passes, and every target binds its keys (counted)."""
    check_config(cfg)
    count = 0
    for where, node in walk_targets(cfg):
        target = resolve_target(node._target_)
        kwargs = {k: None for k in node if not str(k).startswith("_")}
        signature = inspect.signature(target)
        try:
            signature.bind_partial(**kwargs)
        except TypeError as err:
            raise AssertionError(
                f"{where}: {node._target_} does not take {sorted(kwargs)}: {err}"
            ) from err
        count += 1
    return count


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_binds(name):
    cfg = compose_cfg([f"+experiment={name}"])
    if cfg.shared_loss is None:
        assert set(cfg.losses) == set(cfg.data.datasets), "one loss per dataset"
    else:
        assert not cfg.losses, "one loss for all datasets, or one per dataset: not both"
    evaluators = {k for k, v in cfg.evaluator.items() if v is not None}
    for cb in cfg.callbacks.values():
        monitor = cb.get("monitor") if cb is not None else None
        if monitor:
            assert monitor.split("/")[1] in evaluators
    assert check_binds(cfg) >= 5


@pytest.mark.parametrize("sweep", SWEEPS)
def test_sweep_composes_with_its_experiment(sweep):
    experiment = next(e for e in EXPERIMENTS if sweep.startswith(e))
    cfg = compose_cfg(
        [f"+experiment={experiment}", f"+hparams_search={sweep}"], return_hydra_config=True
    )
    assert cfg.hydra.mode.name == "MULTIRUN" and cfg.optimized_metric
    assert cfg.optimized_metric.split("/")[1] in cfg.evaluator
    # A sweep selects on a dev split; the test split stays for the final report.
    assert "test" not in cfg.evaluator[cfg.optimized_metric.split("/")[1]].split
    for key in cfg.hydra.sweeper.params:
        assert OmegaConf.select(cfg, key) is not None, f"swept key {key} does not exist"


@pytest.mark.parametrize("group", ["loss", "evaluator", "trainer"])
def test_group_files_swap_into_smoke(group):
    for path in sorted((CONF / group).glob("*.yaml")):
        if group == "loss":
            overrides = ["+experiment=smoke", f"loss@losses.nli={path.stem}"]
        elif group == "evaluator":
            overrides = ["+experiment=smoke", f"evaluator=[{path.stem}]"]
        else:
            overrides = ["+experiment=smoke", f"trainer={path.stem}"]
        cfg = compose_cfg(overrides)
        check_binds(cfg)


def test_unknown_experiment_is_named():
    with pytest.raises(Exception, match="nli_tripplet"):
        compose_cfg(["+experiment=nli_tripplet"])


def readme_training_commands(section: str) -> list[list[str]]:
    """The Hydra overrides of every `st_lightning.train` command in the README's code blocks
    under `section` (continuation lines joined, launcher flags and comments dropped)."""
    text = (CONF.parent / "README.md").read_text()
    part = text[text.index(section) :]
    block = part[part.index("```bash") + 7 : part.index("```", part.index("```bash") + 7)]
    commands = []
    for command in block.replace("\\\n", " ").splitlines():
        command = command.split("#", 1)[0].strip()
        if "st_lightning.train" not in command:
            continue
        words = command.split("st_lightning.train", 1)[1].split()
        commands.append([w.replace("$SLURM_JOB_ID", "1234") for w in words])
    return commands


# Where each README multi-GPU command runs on CPUs (gloo, 2 processes, a few steps, the real
# model): tests/training/test_real_model_distributed.py. Here each is composed as written and bound.
MULTI_GPU = readme_training_commands("Multi-GPU and clusters")


@pytest.mark.parametrize("overrides", MULTI_GPU, ids=[" ".join(c[1:3]) for c in MULTI_GPU])
def test_readme_multi_gpu_commands_compose_and_bind(overrides):
    cfg = compose_cfg(overrides)
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.devices == 8
    assert cfg.trainer.precision == "bf16-mixed"
    assert check_binds(cfg) >= 5


def test_readme_lists_the_multi_gpu_commands():
    assert len(MULTI_GPU) == 4  # one node, torchrun, SLURM, FSDP
    assert {"trainer=ddp", "trainer=fsdp"} <= {w for c in MULTI_GPU for w in c}
