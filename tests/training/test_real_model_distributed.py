"""all-MiniLM-L6-v2, the model users train, through every distributed mode (CPU processes, gloo).

The tiny test encoder is a fixture, not a proof: a real BERT checkpoint carries a pooler that
mean pooling never uses, and a multi-dataset run has loss weights that most steps do not use;
DDP refuses a step where a trainable parameter gets no gradient. Each run here is a real
`python -m st_lightning.train` command, most of them the README's multi-GPU commands with
`trainer.accelerator=cpu trainer.devices=2` (and float32) instead of 8 GPUs, a few steps each.

One 2-process DDP run with gathered in-batch negatives is the reference for the others: one
process with the global batch, FSDP, two torchrun "nodes", and a run stopped by SIGTERM and
resumed with the same command all end with its losses and weights.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import MINILM, REPO
from dist_helpers import (
    assert_same_weights,
    losses_by_step,
    run_env,
    stop_when,
    train_on_two_nodes,
)
from safetensors.torch import load_file

from st_lightning.encoders import SentenceEncoder

pytestmark = pytest.mark.slow

STEPS = 6
PER_RANK = 8
SMALL = [
    "evaluator=[]",
    "trainer.precision=32-true",
    "trainer.log_every_n_steps=1",
    "logger.csv.flush_logs_every_n_steps=1",
    "export.best=false",
]
# Runs compared across batch layouts (1 vs 2 processes, DDP vs FSDP) draw no dropout masks.
NO_DROPOUT = [
    "+model.encoder.model_kwargs.hidden_dropout_prob=0.0",
    "+model.encoder.model_kwargs.attention_probs_dropout_prob=0.0",
]
NLI = [
    "+experiment=nli_triplet",
    *SMALL,
    "data.datasets.nli.split='train[:256]'",
    f"trainer.max_steps={STEPS}",
    "loss@losses.nli=mnrl_gathered",
    *NO_DROPOUT,
]
ON_TWO_CPUS = ["trainer.accelerator=cpu", "trainer.devices=2"]
ENV = run_env(REPO, OMP_NUM_THREADS="1")


def train_command(out: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "st_lightning.train", *overrides, f"hydra.run.dir={out}"]


def launch(cmd: list[str], timeout: int = 600) -> str:
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


def assert_same_losses(got: Path, expected: Path, rel: float) -> None:
    a, b = losses_by_step(got), losses_by_step(expected)
    assert sorted(a) == sorted(b) == list(range(STEPS))
    assert [a[s] for s in b] == pytest.approx(list(b.values()), rel=rel)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    """The README's one-node command (`trainer=ddp ... loss@losses.nli=mnrl_gathered`) on two
    CPU processes: 6 steps of 2 x 8 NLI triplets."""
    out = tmp_path_factory.mktemp("ddp")
    launch(train_command(out, *NLI, "trainer=ddp", *ON_TWO_CPUS, f"data.batch_size={PER_RANK}"))
    return out


def test_gathered_negatives_on_two_processes_equal_one_process(ddp_run, tmp_path):
    single = tmp_path / "single"
    launch(train_command(single, *NLI, f"data.batch_size={2 * PER_RANK}"))
    assert_same_losses(ddp_run, single, rel=1e-4)
    assert_same_weights(ddp_run / "final", single / "final", other_batch_layout=True)


def test_fsdp_command_trains_what_ddp_does(ddp_run, tmp_path):
    """The README's FSDP command: FSDP2 over two CPU processes, the real model sharded per
    layer (the unused pooler included, frozen), whole tensors exported."""
    out = tmp_path / "fsdp"
    output = launch(
        train_command(out, *NLI, "trainer=fsdp", *ON_TWO_CPUS, f"data.batch_size={PER_RANK}")
    )
    assert "FSDP: sharded the model in 7 units over 2 ranks" in output
    assert_same_losses(out, ddp_run, rel=1e-4)
    assert_same_weights(out / "final", ddp_run / "final", other_batch_layout=True)


def test_two_nodes_under_torchrun_equal_two_processes(ddp_run, tmp_path):
    """The README's torchrun command with two "nodes" of one process each on 127.0.0.1."""
    train_on_two_nodes([*NLI, f"data.batch_size={PER_RANK}"], tmp_path, REPO, ENV)
    node0 = tmp_path / "node0"
    assert_same_losses(node0, ddp_run, rel=1e-5)
    assert_same_weights(node0 / "final", ddp_run / "final", rtol=1e-5)


def test_sigterm_to_every_process_then_the_same_command_resumes(ddp_run, tmp_path):
    """SLURM's preemption: SIGTERM to the job's processes; the requeued job runs the same
    command with ckpt_path=last and ends as the run never stopped."""
    out = tmp_path / "stopped"
    cmd = train_command(
        out, *NLI, "trainer=ddp", *ON_TWO_CPUS, f"data.batch_size={PER_RANK}", "ckpt_path=last"
    )

    def logged_two_steps() -> bool:
        return len(losses_by_step(out)) >= 2

    code, output = stop_when(
        cmd,
        logged_two_steps,
        lambda proc: os.killpg(proc.pid, signal.SIGTERM),
        cwd=REPO,
        env=ENV,
        finish_s=180,
    )
    assert code != 0 and "Stopped by SIGTERM" in output, output[-4000:]
    step = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert 2 <= step["global_step"] < STEPS
    assert not (out / "final").exists()
    launch(cmd)
    assert_same_losses(out, ddp_run, rel=1e-5)
    assert_same_weights(out / "final", ddp_run / "final", rtol=1e-5)


def test_readme_ddp_command_trains_and_exports_what_sentence_transformers_saves(
    tmp_path, minilm_path, capfd
):
    """The command that crashed at its second step: the pooler is not trained, and the
    exported folder holds it, so sentence-transformers loads it without a new weight."""
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "run"
    launch(
        train_command(
            out,
            "+experiment=nli_triplet",
            "trainer=ddp_sim",
            "trainer.max_steps=3",
            "data.batch_size=16",
            "evaluator=[]",
            "trainer.precision=32-true",
        )
    )
    pooler = "['transformer.pooler.dense.weight', 'transformer.pooler.dense.bias']"
    assert f"the embeddings never use: {pooler}" in (out / "train.log").read_text()
    capfd.readouterr()
    loaded = SentenceTransformer(str(out / "final"), device="cpu")
    report = capfd.readouterr()
    for word in ("MISSING", "UNEXPECTED", "newly initialized"):
        assert word not in report.out + report.err
    # What sentence-transformers itself saves for this model, tensor for tensor.
    loaded.save(str(tmp_path / "resaved"))
    ours = load_file(str(out / "final" / "model.safetensors"))
    theirs = load_file(str(tmp_path / "resaved" / "model.safetensors"))
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key
    original = load_file(str(minilm_path / "model.safetensors"))
    # Every weight of the checkpoint is there (the packaged file also has a position-id
    # buffer that current transformers no longer saves; sentence-transformers drops it too).
    assert ours.keys() == original.keys() - {"embeddings.position_ids"}
    for key in ("pooler.dense.weight", "pooler.dense.bias"):
        assert torch.equal(ours[key], original[key])  # kept, unchanged
    assert not torch.equal(
        ours["encoder.layer.0.output.dense.weight"], original["encoder.layer.0.output.dense.weight"]
    )
    ours_encoder = SentenceEncoder.from_pretrained(out / "final")
    texts = ["A man is playing a guitar.", "Two dogs run on the beach in the sun."]
    assert torch.allclose(
        ours_encoder.encode(texts, convert_to="tensor"),
        loaded.encode(texts, convert_to_tensor=True),
        atol=1e-5,
    )


MULTI = ["+experiment=multi_dataset", *SMALL, "trainer=ddp_sim", "trainer.max_steps=8"]
MULTI += [
    f"data.datasets.{name}.split='train[:64]'"
    for name in ("all-nli-pair", "all-nli-pair-class", "all-nli-pair-score", "all-nli-triplet")
]
MULTI += ["data.datasets.stsb.split='train[:64]'", "data.datasets.quora.split='train[:64]'"]
MULTI += ["data.batch_size=8"]


def test_multi_dataset_softmax_under_ddp_equals_ddps_own_unused_parameter_search(tmp_path):
    """`+experiment=multi_dataset trainer=ddp_sim`: SoftmaxLoss' classifier takes part only in
    its dataset's steps. The run equals, in losses, encoder and classifier, the same run with
    DDP's `find_unused_parameters=True` (which leaves weights unused on every rank untouched),
    without paying for its graph search on every step."""
    ours, reference = tmp_path / "ours", tmp_path / "find_unused"
    launch(train_command(ours, *MULTI))
    launch(
        train_command(reference, *MULTI, "trainer.strategy=ddp_spawn_find_unused_parameters_true")
    )
    assert MINILM in (ours / "config.yaml").read_text()
    rows = list(csv.DictReader(open(ours / "csv" / "version_0" / "metrics.csv")))
    datasets = {k.split("/")[2] for r in rows for k, v in r.items() if k.count("/") == 2 and v}
    assert "all-nli-pair-class" in datasets and len(datasets) >= 3, datasets
    a, b = losses_by_step(ours), losses_by_step(reference)
    assert sorted(a) == list(range(8)) and [a[s] for s in b] == pytest.approx(list(b.values()))
    assert_same_weights(ours / "final", reference / "final", rtol=1e-6)
    classifier = "losses.all-nli-pair-class.classifier.weight"
    states = [
        torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        for run in (ours, reference)
    ]
    assert torch.allclose(states[0]["state_dict"][classifier], states[1]["state_dict"][classifier])
