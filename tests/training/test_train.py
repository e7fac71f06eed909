"""End to end: Hydra config -> train -> exported model that sentence-transformers loads."""

from __future__ import annotations

import math
import os

import pytest
import torch
from conftest import REPO, final_weights, run_cfg

from st_lightning.train import train


def test_smoke_trains_evaluates_and_exports(tmp_path):
    from sentence_transformers import SentenceTransformer

    cfg = run_cfg(tmp_path, ["+experiment=smoke"])
    metrics = train(cfg)
    assert math.isfinite(metrics["train/loss"])
    assert "val/sts_tiny/spearman_cosine" in metrics
    model = SentenceTransformer(str(tmp_path / "final"), device="cpu")
    assert model.encode(["a sentence"]).shape == (1, 32)
    card = (tmp_path / "final" / "README.md").read_text()
    for section in (
        "## Model details",
        "## Usage",
        "## Evaluation",
        "### Training datasets",
        "## Citation",
    ):
        assert section in card
    assert (tmp_path / "config.yaml").exists() and (tmp_path / "eval" / "sts_tiny.csv").exists()
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()


# Per experiment: what makes it run in seconds (a tiny model, little data, a few steps).
FAST = ["model/encoder=tiny", "trainer=default", "trainer.max_steps=2", "evaluator=[sts_tiny]"]
SHRINK = {
    "nli_triplet": ["data.datasets.nli.split='train[:64]'"],
    "sts_cosent": [
        "data.datasets.stsb.split='train[:64]'",
        "callbacks.model_checkpoint.monitor=null",
    ],
    "nli_softmax": ["data.datasets.nli.split='train[:64]'", "losses.nli.embedding_dimension=32"],
    "multi_dataset": [
        *[
            f"data.datasets.{d}.split='train[:40]'"
            for d in (
                "all-nli-pair",
                "all-nli-pair-class",
                "all-nli-pair-score",
                "all-nli-triplet",
                "stsb",
                "quora",
                "natural-questions",
            )
        ],
        "losses.all-nli-pair-class.embedding_dimension=32",
    ],
    "matryoshka_nli": [
        "data.datasets.nli.split='train[:64]'",
        "losses.nli.matryoshka_dims=[32,16,8]",
        "~evaluator.sts_test_64",
    ],
    "quora_duplicates": ["data.datasets.quora.split='train[:64]'"],
    "distillation": [
        "data.datasets.distill.split='train[:64]'",
        "+model.encoder.dense_dim=384",
        "~model.encoder.model_kwargs",
    ],
}


@pytest.mark.parametrize("name", sorted(SHRINK))
def test_every_experiment_runs(name, tmp_path):
    cfg = run_cfg(tmp_path, [f"+experiment={name}", *FAST, *SHRINK[name]])
    metrics = train(cfg)
    assert math.isfinite(metrics["train/loss"]) and "val/sts_tiny/spearman_cosine" in metrics
    assert (tmp_path / "final" / "modules.json").exists()


@pytest.mark.slow
def test_resumed_run_ends_with_the_same_weights(tmp_path):
    """Stop after 3 of 7 steps (mid-epoch, dropout on), resume: same weights as never stopped.

    The smoke data has 48 rows in batches of 4, so 7 steps stay inside the first epoch.
    """
    base = [
        "+experiment=smoke",
        "evaluator=[]",
        "trainer.max_steps=7",
        "data.batch_size=4",
        "callbacks.model_checkpoint.every_n_train_steps=1",
        "callbacks.model_checkpoint.save_top_k=-1",
    ]
    train(run_cfg(tmp_path / "full", base))
    stopped = tmp_path / "part"
    stop = ["+callbacks.stop._target_=st_lightning.utils.stop.StopAtStep", "+callbacks.stop.step=3"]
    train(run_cfg(stopped, [*base, *stop]))
    checkpoint = stopped / "checkpoints" / "last.ckpt"
    train(run_cfg(tmp_path / "resumed", [*base, f"ckpt_path={checkpoint}"]))
    expected, got = final_weights(tmp_path / "full"), final_weights(tmp_path / "resumed")
    assert not all(torch.equal(expected[k], final_weights(stopped)[k]) for k in expected)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-7, msg=key)


def test_checkpoint_from_another_model_is_refused(tmp_path):
    base = ["+experiment=smoke", "evaluator=[]", "trainer.max_steps=1"]
    train(run_cfg(tmp_path / "a", base))
    checkpoint = tmp_path / "a" / "checkpoints" / "last.ckpt"
    with pytest.raises(ValueError, match="another model"):
        train(
            run_cfg(
                tmp_path / "b", [*base, "model.encoder.hidden_size=48", f"ckpt_path={checkpoint}"]
            )
        )


def test_monitor_of_a_missing_metric_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match="comes from no configured evaluator"):
        train(
            run_cfg(
                tmp_path,
                [
                    "+experiment=smoke",
                    "callbacks.model_checkpoint.monitor=val/sts_dev/spearman_cosine",
                ],
            )
        )
    with pytest.raises(ValueError, match="not produced by the evaluators"):
        train(
            run_cfg(
                tmp_path,
                ["+experiment=smoke", "callbacks.model_checkpoint.monitor=val/sts_tiny/spearman"],
            )
        )


def test_loss_dict_not_matching_the_datasets(tmp_path):
    with pytest.raises(ValueError, match="keyed"):
        train(run_cfg(tmp_path, ["+experiment=smoke", "+loss@losses.other=cosent"]))


@pytest.mark.slow
def test_two_job_learning_rate_sweep(tmp_path):
    """A -m sweep over the learning rate: two jobs, each returning the optimized metric."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "st_lightning.train",
        "-m",
        "+experiment=smoke",
        "model.lr=1e-3,3e-3",
        "optimized_metric=val/sts_tiny/spearman_cosine",
        f"hydra.sweep.dir={tmp_path}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    logs = [(tmp_path / str(job) / "train.log").read_text() for job in (0, 1)]
    values = [
        float(log.split("optimized_metric val/sts_tiny/spearman_cosine = ")[1].split()[0])
        for log in logs
    ]
    assert all(-1 <= v <= 1 for v in values)
    lrs = [(tmp_path / str(job) / "config.yaml").read_text() for job in (0, 1)]
    assert "lr: 0.001" in lrs[0] and "lr: 0.003" in lrs[1]


@pytest.mark.slow
def test_ddp_two_cpu_ranks_train_evaluate_and_export(tmp_path):
    from sentence_transformers import SentenceTransformer

    cfg = run_cfg(
        tmp_path, ["+experiment=smoke", "trainer=ddp_sim", "loss@losses.nli=mnrl_gathered"]
    )
    metrics = train(cfg)
    assert math.isfinite(metrics["train/loss"]) and "val/sts_tiny/spearman_cosine" in metrics
    assert SentenceTransformer(str(tmp_path / "final"), device="cpu").encode(["x"]).shape == (1, 32)


def test_push_to_hub_uploads_the_final_folder(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, repo_id, exist_ok):
            calls.append(("create", repo_id))

        def upload_folder(self, folder_path, repo_id, commit_message):
            from pathlib import Path

            calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
            return "https://hub/" + repo_id

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    train(
        run_cfg(
            tmp_path,
            [
                "+experiment=smoke",
                "evaluator=[]",
                "trainer.max_steps=1",
                "export.push_to_hub=me/tiny",
            ],
        )
    )
    assert calls[0] == ("create", "me/tiny")
    assert calls[1][0] == "upload" and {"README.md", "modules.json", "model.safetensors"} <= set(
        calls[1][2]
    )


def test_export_cli_and_evaluate_cli_on_a_checkpoint(tmp_path, capsys):
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from st_lightning import evaluate, export

    train(run_cfg(tmp_path, ["+experiment=smoke", "evaluator=[]", "trainer.max_steps=2"]))
    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    assert export.main([str(checkpoint), str(tmp_path / "exported")]) == 0
    texts = ["one sentence", "and another, longer, one"]
    a = SentenceTransformer(str(tmp_path / "exported"), device="cpu").encode(texts)
    b = SentenceTransformer(str(tmp_path / "final"), device="cpu").encode(texts)
    np.testing.assert_allclose(a, b, atol=1e-6)
    out = tmp_path / "metrics.json"
    assert (
        evaluate.main(
            [
                str(checkpoint),
                "--suite",
                "stsb-dev",
                "--data-dir",
                str(REPO / "data"),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert "spearman_cosine" in out.read_text()


def test_truncated_checkpoint_gets_a_clear_error(tmp_path):
    from st_lightning.export import read_checkpoint

    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(ValueError, match="truncated, damaged or not a checkpoint"):
        read_checkpoint(broken)


@pytest.mark.parametrize("logger", ["wandb", "tensorboard"])
def test_other_loggers_write_offline(logger, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    train(run_cfg(tmp_path, ["+experiment=smoke", f"logger={logger}", "trainer.max_steps=2"]))
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    marker = "wandb" if logger == "wandb" else "events.out.tfevents"
    assert any(marker in str(p) for p in written)


def test_gradient_caching_mode_trains_like_the_plain_step(tmp_path):
    """model.mini_batch_size turns on GradCache (manual optimization): same weights, 3 steps."""
    base = [
        "+experiment=smoke",
        "evaluator=[]",
        "trainer.max_steps=3",
        "model.encoder.dropout=0.0",
    ]
    train(run_cfg(tmp_path / "plain", base))
    train(run_cfg(tmp_path / "cached", [*base, "model.mini_batch_size=3"]))
    plain, cached = final_weights(tmp_path / "plain"), final_weights(tmp_path / "cached")
    start = final_weights_of_untrained()
    for key, value in plain.items():
        moved = (value - start[key]).norm()
        # 1e-5 absolute: key biases get a zero gradient in exact arithmetic, which Adam turns
        # into moves of about 1e-6 from float noise.
        assert (cached[key] - value).norm() <= 1e-3 * moved + 1e-5, key


def final_weights_of_untrained():
    from st_lightning.encoders import tiny_encoder

    encoder = tiny_encoder(dropout=0.0)
    return {
        k.removeprefix("transformer."): v
        for k, v in encoder.state_dict().items()
        if k.startswith("transformer.")
    }


def test_kernel_cache_is_bounded_unless_the_environment_sets_it(tmp_path, monkeypatch):
    """The soak benchmark's flat memory depends on this cap (benchmarks/results/soak.md)."""
    from st_lightning.utils.memory import ONEDNN_CACHE, ONEDNN_CACHE_CAPACITY, bound_kernel_cache

    monkeypatch.delenv(ONEDNN_CACHE, raising=False)
    train(run_cfg(tmp_path, ["+experiment=smoke", "trainer.max_steps=1", "evaluator=[]"]))
    assert os.environ[ONEDNN_CACHE] == str(ONEDNN_CACHE_CAPACITY)
    monkeypatch.setenv(ONEDNN_CACHE, "8")
    bound_kernel_cache()
    assert os.environ[ONEDNN_CACHE] == "8"  # a setting from the environment is kept


@pytest.mark.parametrize(
    "clipping",
    [["trainer.gradient_clip_val=0.5"], ["model.mini_batch_size=3", "model.gradient_clip_val=0.5"]],
    ids=["lightning", "gradient_caching"],
)
def test_gradient_clipping_trains_under_bf16(tmp_path, clipping):
    """bf16-mixed (what precision=auto picks on bf16 CPUs and GPUs) with the fused AdamW."""
    overrides = ["+experiment=smoke", "evaluator=[]", "trainer.precision=bf16-mixed", *clipping]
    metrics = train(run_cfg(tmp_path, overrides))
    assert math.isfinite(metrics["train/loss"])
