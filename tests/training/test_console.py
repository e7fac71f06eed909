"""What a user sees in the terminal: no third-party noise, one run line, the final table."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

# Lines that would be a warning, an advertisement or a stack: none may appear in a clean run.
# A third-party logger's own prefix ("[transformers] ...") marks its lines at any level.
NOISE = re.compile(
    r"warn|deprecat|tip:|flops|not supported|error|traceback|\.py:\d+: "
    r"|\[(transformers|peft|lightning|torch|datasets|huggingface_hub)[\].]",
    flags=re.IGNORECASE,
)


def run_train(tmp_path, *overrides: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONWARNINGS", "WANDB"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "st_lightning.train", "+experiment=smoke",
           f"hydra.run.dir={tmp_path}", *overrides]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    return out.replace(str(tmp_path), "<run>")  # the test's own name is in the path


def noise(out: str) -> list[str]:
    # tqdm redraws the bar with carriage returns; every redraw is checked.
    lines = [part for line in out.splitlines() for part in line.split("\r")]
    return [line for line in lines if NOISE.search(line)]


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param((), id="smoke"),
        # The real model under bf16-mixed: where Lightning's model summary used to complain.
        pytest.param(
            ("model/encoder=minilm", "trainer.precision=bf16-mixed", "trainer.max_steps=2"),
            id="minilm-bf16",
        ),
        # A decoder with LoRA and checkpointing: where peft and transformers used to complain.
        pytest.param(
            (
                "model/encoder=tiny_decoder",
                "export.merge_adapters=true",
                "model.encoder.lora={r: 4, alpha: 8, target_modules: [q_proj, v_proj]}",
                "model.encoder.gradient_checkpointing=true",
            ),
            id="decoder-lora",
        ),  # fmt: skip
    ],
)
def test_a_run_prints_no_warning_and_ends_with_the_table_and_folder(tmp_path, overrides):
    out = run_train(tmp_path, *overrides)
    assert noise(out) == []
    line = r"Training (BertModel|Qwen3Model \+ LoRA): [\d.]+[KM] parameters .* precision (32|bf16)"
    assert re.search(line, out)
    assert re.search(r"^sts_tiny +spearman_cosine +-?\d\.\d{4} +-?\d\.\d{4}$", out, re.MULTILINE)
    assert "final model: <run>/final" in out
    assert re.search(r"loss=\d+\.\d+, samples/s=\d+", out)  # the progress bar's metrics


def test_the_noise_check_catches_what_the_console_used_to_show():
    # The lines the issue quoted, as they were printed: each must be caught.
    shown = [
        "  corresp(dist, value, root_dir) BuildBackendWarning: `project.license` as a TOML table "
        "is deprecated",
        "/x/lightning/pytorch/utilities/_pytree.py:21: `isinstance(treespec, LeafSpec)` is "
        "deprecated, use ...",
        "💡 Tip: For seamless cloud logging and experiment tracking, try installing litlogger",
        "Precision bf16-mixed is not supported by the model summary.",
        "Total FLOPs: 0",
        "[transformers] `use_cache=True` is incompatible with gradient checkpointing. Setting "
        "`use_cache=False`.",
    ]
    assert noise("\n".join(shown)) == shown


def test_a_user_warning_still_shows(tmp_path):
    # Quieting third parties must not hide warnings about the user's own settings.
    out = run_train(tmp_path, "trainer.log_every_n_steps=50")
    assert any("log_every_n_steps" in line for line in noise(out))
