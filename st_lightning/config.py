"""Checking a composed run config against the code it builds, before anything loads.

Every `_target_` node is bound against its callable's signature: keys that are not arguments
and values of the wrong type are collected, with their config paths, into one error. A plain
mapping given where an argument takes a dataclass (a `DatasetSpec` written without `_target_`)
is checked against the dataclass's fields. Sections without a target that the run builder
reads (`evaluation`, `export`) are checked against the functions that take them.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Union, get_args, get_origin

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

HYDRA_KEYS = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")
# Values st_lightning's run builder accepts beyond what the target's signature says.
EXTENSIONS: dict[str, tuple[Any, ...]] = {"trainer.precision": ("auto",)}
_UNKNOWN = object()  # a value that cannot be resolved outside a Hydra run (hydra.job.id)


def sections() -> dict[str, Callable[..., Any]]:
    """Config sections without a `_target_`, and what the run builder passes them to."""
    from st_lightning.evaluation.callback import EvaluatorCallback
    from st_lightning.run import Run

    return {"evaluation": EvaluatorCallback, "export": Run.export}


def check_config(cfg: DictConfig) -> None:
    """Raise one ValueError listing every unknown key and wrongly typed value in `cfg`, and
    every monitored metric that no configured evaluator logs."""
    problems: list[str] = []
    for key in map(str, cfg):
        if key == "hydra":
            continue
        node = _value(cfg, key, None)
        if isinstance(node, DictConfig):
            problems += check_node(node, str(key))
    for key, target in sections().items():
        node = _value(cfg, key, None)
        if isinstance(node, DictConfig):
            problems += check_arguments(target, node, key)
    problems += check_required_trainer(cfg)
    seed = _value(cfg, "seed")
    if seed is not _UNKNOWN and not _matches(seed, int):
        problems.append(f"seed must be int, got {seed!r} ({type(seed).__name__})")
    problems += check_monitors(cfg)
    problems += check_wandb_artifact(cfg)
    problems += check_streaming(cfg)
    if _value(cfg, "shared_loss", None) is not None and _value(cfg, "losses", None):
        problems.append(
            "both shared_loss (one loss for every dataset) and losses (one per dataset) are "
            "set; keep one of them"
        )
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise ValueError(
            f"The config has {len(problems)} problem(s); nothing was loaded:\n{listing}\n"
            "Fix the command-line overrides or the config files."
        )
    from st_lightning.utils.fsdp import check_strategy

    check_strategy(OmegaConf.select(cfg, "trainer.strategy"))


def check_node(node: DictConfig, path: str) -> list[str]:
    """Problems of every `_target_` node at or below `node`."""
    problems: list[str] = []
    if "_target_" in node:
        try:
            target = get_object(str(node["_target_"]))
        except Exception as err:  # noqa: BLE001 - hydra wraps import errors variously
            return [f"{path}._target_: cannot import {node['_target_']!r} ({err})"]
        problems += check_arguments(target, node, path)
    for key in map(str, node):
        child = _value(node, key, None)
        if isinstance(child, DictConfig):
            problems += check_node(child, f"{path}.{key}")
        elif isinstance(child, ListConfig):
            for i, item in enumerate(child):
                if isinstance(item, DictConfig):
                    problems += check_node(item, f"{path}.{key}[{i}]")
    return problems


def check_arguments(target: Callable[..., Any], node: DictConfig, path: str) -> list[str]:
    """Problems of `node`'s keys as arguments of `target`."""
    params, hints, open_ended = signature_of(target)
    problems = []
    for key in node:
        key = str(key)
        if key in HYDRA_KEYS:
            continue
        if key not in params:
            if not open_ended:
                problems.append(unknown(f"{path}.{key}", key, params, target))
            continue
        value = _value(node, key)
        hint = hints.get(key, Any)
        if value is _UNKNOWN or _has_target(value):
            continue
        try:
            nested = isinstance(value, DictConfig | ListConfig)
            plain = OmegaConf.to_container(value, resolve=True) if nested else value
        except Exception:  # noqa: BLE001 - an interpolation that needs a Hydra run
            continue
        if plain in EXTENSIONS.get(f"{path}.{key}", ()):
            continue
        if not _matches(plain, hint):
            problems.append(
                f"{path}.{key} must be {_describe(hint)}, got {plain!r} ({type(plain).__name__})"
            )
        problems += check_dataclass_values(plain, hint, f"{path}.{key}")
    return problems


def signature_of(target: Callable[..., Any]) -> tuple[list[str], dict[str, Any], bool]:
    """(argument names, their type hints, whether it takes any keyword). A class whose
    `__init__` passes `**kwargs` on to its parent takes the parent's arguments too."""
    names: list[str] = []
    hints: dict[str, Any] = {}
    chain = [c for c in target.__mro__ if c is not object] if isinstance(target, type) else [target]
    for item in chain:
        function = item.__init__ if isinstance(item, type) else item  # type: ignore[misc]
        if isinstance(item, type) and "__init__" not in vars(item):
            continue
        try:
            sig = inspect.signature(function)
        except (TypeError, ValueError):
            return names, hints, True
        try:
            found = typing.get_type_hints(function)
        except Exception:  # noqa: BLE001 - third-party annotations may not resolve
            found = {}
        for name, p in sig.parameters.items():
            if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if name not in names:
                names.append(name)
                written = p.annotation  # resolved already where a signature was built
                plain = written is not p.empty and not isinstance(written, str)
                hints[name] = found.get(name, written if plain else Any)
        if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            return names, hints, False
        if not isinstance(item, type):
            return names, hints, True  # a function taking **kwargs: anything goes
    return names, hints, True


def check_dataclass_values(value: Any, hint: Any, path: str) -> list[str]:
    """A mapping of plain mappings where the hint takes a dataclass (`datasets: {name: {path:
    ...}}` for `Mapping[str, DatasetSpec | ...]`): each checked against the dataclass."""
    if not isinstance(value, dict):
        return []
    direct = [c for c in _flatten(hint) if dataclasses.is_dataclass(c)]
    kinds = [a for a in _flatten(hint) if get_origin(a) in (dict, Mapping, typing.Mapping)]
    of_mappings = bool(value) and all(isinstance(v, dict) for v in value.values())
    if direct and "_target_" not in value and not (kinds and of_mappings):
        return check_fields(value, direct[0], path)  # type: ignore[arg-type]
    problems = []
    for mapping in kinds:
        args = get_args(mapping)
        classes = [c for c in _flatten(args[1]) if dataclasses.is_dataclass(c)] if args else []
        for cls in classes:
            for name, entry in value.items():
                if isinstance(entry, dict) and "_target_" not in entry:
                    problems += check_fields(entry, cls, f"{path}.{name}")  # type: ignore[arg-type]
    return problems


def check_fields(entry: dict[str, Any], cls: type, path: str) -> list[str]:
    """Keys of a plain mapping written for dataclass `cls`, and of mappings it holds for
    dataclass-typed fields (a DatasetSpec's `hard_negatives`)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    problems = []
    for key, item in entry.items():
        if key not in fields:
            problems.append(unknown(f"{path}.{key}", key, list(fields), cls))
            continue
        inner = [c for c in _flatten(hints.get(key, Any)) if dataclasses.is_dataclass(c)]
        if isinstance(item, dict) and inner:
            problems += check_fields(item, inner[0], f"{path}.{key}")  # type: ignore[arg-type]
        elif not _matches(item, hints.get(key, Any)):
            problems.append(
                f"{path}.{key} must be {_describe(hints[key])}, got {item!r} "
                f"({type(item).__name__})"
            )
    return problems


def unknown(path: str, key: str, params: Sequence[str], target: Any) -> str:
    close = difflib.get_close_matches(key, params, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    name = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', target)}"
    return f"{path}: not an argument of {name}{hint}; it takes {', '.join(params)}"


def check_required_trainer(cfg: DictConfig) -> list[str]:
    """The Trainer settings the run builder needs (and would refuse later, after loading)."""
    from st_lightning.run import REQUIRED_TRAINER

    problems = []
    for key, value in REQUIRED_TRAINER.items():
        got = OmegaConf.select(cfg, f"trainer.{key}", default=value)
        if got != value:
            problems.append(
                f"trainer.{key}={got!r} is not supported: st_lightning needs {value!r} (its "
                "samplers shard batches by rank and may change an epoch's length)"
            )
    return problems


def check_streaming(cfg: DictConfig) -> list[str]:
    """Streamed datasets have no epoch length: the run length must be trainer.max_steps."""
    datasets = OmegaConf.select(cfg, "data.datasets", default=None) or {}
    streamed = [
        str(name)
        for name, node in datasets.items()
        if isinstance(node, DictConfig) and _value(node, "streaming", False) is True
    ]
    if OmegaConf.select(cfg, "data.streaming", default=False) is True:
        streamed = [str(name) for name in datasets]
    max_steps = OmegaConf.select(cfg, "trainer.max_steps", default=-1)
    if streamed and isinstance(max_steps, int) and max_steps < 0:
        return [
            f"datasets {streamed} stream (streaming=true), and a stream has no epoch length: "
            "set trainer.max_steps (the run length, and the learning-rate schedule's)"
        ]
    return []


def check_wandb_artifact(cfg: DictConfig) -> list[str]:
    wants = OmegaConf.select(cfg, "export.wandb_artifact", default=False)
    loggers = OmegaConf.select(cfg, "logger", default=None) or {}
    has_wandb = any(
        "wandb" in str(getattr(node, "_target_", "") or "").lower()
        for node in loggers.values()
        if isinstance(node, DictConfig)
    )
    if wants and not has_wandb:
        return [
            "export.wandb_artifact=true logs the exported model to W&B, but the run has no W&B "
            "logger: add logger=wandb (or set export.wandb_artifact=false)"
        ]
    return []


def check_monitors(cfg: DictConfig) -> list[str]:
    evaluators = [k for k, v in (cfg.get("evaluator") or {}).items() if v is not None]
    eval_data = OmegaConf.select(cfg, "data.eval_datasets")
    losses = ["val/loss"]
    if isinstance(eval_data, DictConfig) and "path" not in eval_data:
        losses += [f"val/loss/{name!s}" for name in eval_data]
    elif eval_data is not None:
        datasets = OmegaConf.select(cfg, "data.datasets") or {}
        losses += [f"val/loss/{name!s}" for name in datasets]
    problems = []
    for key in monitors(cfg):
        parts = key.split("/")
        if parts[0] == "train":
            continue
        if parts[:2] == ["val", "loss"]:
            if eval_data is None:
                problems.append(
                    f"the monitored metric {key!r} needs evaluation data: set data.eval_datasets"
                )
            elif key not in losses:
                problems.append(f"the monitored metric {key!r} is not logged; losses are {losses}")
            continue
        if len(parts) < 3 or parts[0] != "val" or parts[1] not in evaluators:
            problems.append(
                f"the monitored metric {key!r} comes from no configured evaluator; metrics are "
                f"val/<evaluator>/<metric> (or val/loss with data.eval_datasets) and the "
                f"evaluators are {evaluators}"
            )
    return problems


def monitors(cfg: DictConfig) -> list[str]:
    """Metric keys that the sweep (optimized_metric) and the callbacks (monitor) watch."""
    found = [cfg.get("optimized_metric")]
    found += [cb.get("monitor") for cb in (cfg.get("callbacks") or {}).values() if cb is not None]
    return [str(m) for m in found if m]


def instantiate_named(node: DictConfig | None, **kwargs: Any) -> dict[str, Any]:
    """name -> object for each entry of a plural node (evaluators, callbacks, loggers,
    losses) with a `_target_`; entries set to null are skipped."""
    from hydra.utils import instantiate

    out = {}
    for name, sub in (node or {}).items():
        if sub is None:
            continue
        if not (isinstance(sub, dict | DictConfig) and "_target_" in sub):
            raise ValueError(f"Config entry {name!r} has no _target_; got {sub!r}.")
        out[str(name)] = instantiate(sub, **kwargs)
    return out


# ---- values and types --------------------------------------------------------------------------
def _value(node: DictConfig, key: str, unknown: Any = _UNKNOWN) -> Any:
    try:
        return node[key]
    except Exception:  # noqa: BLE001 - an interpolation that needs a Hydra run
        return unknown


def _has_target(value: Any) -> bool:
    return isinstance(value, DictConfig) and "_target_" in value


def _flatten(hint: Any) -> list[Any]:
    if get_origin(hint) in (Union, types.UnionType):
        return [a for arg in get_args(hint) for a in _flatten(arg)]
    return [hint]


def _matches(value: Any, hint: Any) -> bool:
    """Whether a plain config value fits a type hint; True where it cannot tell."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is Literal:
        return value in args
    if hint is type(None):
        return value is None
    if value is None:
        return False
    if isinstance(value, dict) and "_target_" in value:
        return True  # built by its own node
    if hint in (bool, int, float, str):
        if isinstance(value, bool):
            return hint is bool
        return isinstance(value, (int, float) if hint is float else hint)
    if origin in (list, tuple, set, Sequence, Iterable, typing.Sequence, typing.Iterable):
        if not isinstance(value, list | tuple):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(args) == len(value) and all(map(_matches, value, args))
        return not args or all(_matches(v, args[0]) for v in value)
    if origin in (dict, Mapping, typing.Mapping):
        if not isinstance(value, dict):
            return False
        return len(args) < 2 or all(_matches(v, args[1]) for v in value.values())
    if hint in (list, tuple):
        return isinstance(value, list | tuple)
    if hint is dict:
        return isinstance(value, dict)
    return True  # a class or callable: the constructor decides


def _describe(hint: Any) -> str:
    if get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(hint))
    if get_origin(hint) is Literal:
        return "one of " + ", ".join(map(repr, get_args(hint)))
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
