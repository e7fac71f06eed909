"""The CUDA paths, checked on the first machine with a GPU (skipped without one, always collected).

`python benchmarks/gpu.py` runs these first. Each is written against all-MiniLM-L6-v2, the model
the README trains; runs that need several GPUs use every GPU there is (one is enough to run
them: DDP and FSDP then have one rank, over NCCL all the same).
"""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from conftest import DATA, MINILM, REPO
from dist_helpers import free_port, losses_by_step, run_env

from st_lightning import EmbeddingModule, losses
from st_lightning.data.collate import Batch
from st_lightning.encoders import SentenceEncoder, tiny_encoder, unpadded

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def gpus() -> int:
    return min(torch.cuda.device_count(), 2) if torch.cuda.is_available() else 0


def no_dropout(encoder: SentenceEncoder) -> SentenceEncoder:
    for module in encoder.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return encoder


@pytest.fixture(scope="module")
def triplets() -> list[list[str]]:
    from datasets import load_dataset

    rows = load_dataset(str(DATA / "all-nli"), "triplet", split="train[:48]")
    return [list(rows["anchor"]), list(rows["positive"]), list(rows["negative"])]


def nli_batch(encoder: SentenceEncoder, columns: list[list[str]]) -> Batch:
    features = [{k: v.to(CUDA) for k, v in encoder.tokenize(c).items()} for c in columns]
    return Batch("nli", features)


def step(
    module: EmbeddingModule, batch: Batch, bf16: bool
) -> tuple[float, dict[str, torch.Tensor]]:
    module.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        embeddings = module.embedder(batch.features)
        loss = module.loss_for("nli")(embeddings, None)
    loss.backward()
    grads = {n: p.grad.float().clone() for n, p in module.named_parameters() if p.grad is not None}
    return float(loss), grads


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))


@pytest.fixture
def module(minilm) -> EmbeddingModule:
    encoder = no_dropout(copy.deepcopy(minilm)).train().to(CUDA)
    return EmbeddingModule(encoder, losses.MultipleNegativesRankingLoss())


def test_bf16_mixed_step_equals_the_fp32_step(module, triplets):
    batch = nli_batch(module.encoder, triplets)
    loss32, grads32 = step(module, batch, bf16=False)
    loss16, grads16 = step(module, batch, bf16=True)
    assert loss16 == pytest.approx(loss32, rel=3e-2)
    assert grads16.keys() == grads32.keys()
    whole = cosine(
        torch.cat([g.flatten() for g in grads16.values()]),
        torch.cat([g.flatten() for g in grads32.values()]),
    )
    assert whole > 0.99
    for name, grad in grads32.items():
        if grad.norm() > 1e-3 * max(g.norm() for g in grads32.values()):
            assert cosine(grads16[name], grad) > 0.95, name


@pytest.mark.parametrize("bf16", [True, False], ids=["bf16", "fp32"])
def test_unpadded_forward_on_cuda_equals_the_padded_one(module, triplets, bf16, monkeypatch):
    """In bf16 the attention runs in one variable-length kernel call per layer (no padded
    groups); in float32 in padded groups. Either way: the padded forward's embeddings and
    gradients."""
    chosen = []
    real_kernel = unpadded.varlen_kernel

    def spy(q, dropout):
        kernel = real_kernel(q, dropout)
        chosen.append(kernel is not None)
        return kernel

    monkeypatch.setattr(unpadded, "varlen_kernel", spy)
    batch = nli_batch(module.encoder, triplets)
    module.encoder.unpadded = False
    plain_loss, plain = step(module, batch, bf16)
    module.encoder.unpadded = True
    packed_loss, packed = step(module, batch, bf16)
    layers = module.encoder.transformer.config.num_hidden_layers
    assert chosen == [bf16] * layers
    tolerance = 3e-2 if bf16 else 1e-4
    assert packed_loss == pytest.approx(plain_loss, rel=tolerance)
    for name, grad in plain.items():
        if grad.norm() > 1e-3:
            assert cosine(packed[name], grad) > (0.98 if bf16 else 0.9999), name


def test_host_synchronisations_per_step(module, triplets, monkeypatch):
    """Up to the backward pass, a training step waits for the device twice: the unpadded
    forward reads how many real tokens there are (to pack them), and the ranks' agreement
    reads whether the loss is finite and whether SIGTERM came. Logging adds none. (The
    backward pass's own waits, such as the embedding gradient's, are torch's.)"""
    monkeypatch.setattr(module, "log", lambda *args, **kwargs: None)
    batch = nli_batch(module.encoder, triplets)
    step(module, batch, bf16=True)  # warm-up: kernels chosen, caches filled
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with torch.autocast("cuda", dtype=torch.bfloat16):
                embeddings = module.embedder(batch.features)
                value = module.loss_for("nli")(embeddings, None)
            assert module.agree_and_log(batch, 0, value, value)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) <= 2, syncs


def test_batches_are_pinned_and_copied_without_blocking(monkeypatch):
    from lightning.fabric.utilities.apply_func import move_data_to_device

    from st_lightning.data import DatasetSpec, EmbeddingDataModule, collate

    encoder = tiny_encoder()
    data = EmbeddingDataModule(
        {"nli": DatasetSpec(str(REPO / "tests/assets/tiny_nli.jsonl"))},
        tokenizer=encoder.tokenizer,
        batch_size=8,
    )
    batch = next(iter(data.train_dataloader()))
    assert all(v.is_pinned() for f in batch.features for v in f.values() if torch.is_tensor(v))
    flags = []
    original = collate._to
    monkeypatch.setattr(collate, "_to", lambda v, d, nb: flags.append(nb) or original(v, d, nb))
    moved = move_data_to_device(batch, CUDA)  # what the Trainer does with each batch
    assert flags and all(flags)
    assert all(v.is_cuda for f in moved.features for v in f.values() if torch.is_tensor(v))


def test_fsdp2_bf16_policy_gathers_bf16_weights_and_keeps_fp32_shards(tmp_path):
    from torch.distributed.device_mesh import init_device_mesh

    from st_lightning.utils.fsdp import mixed_precision_policy, shard_module

    dist.init_process_group(
        "nccl", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
    )
    try:
        torch.cuda.set_device(0)
        encoder = tiny_encoder(dropout=0.0).to(CUDA)
        encoder.freeze_unused()  # the pooler, as EmbeddingModule does
        mesh = init_device_mesh("cuda", (1,))
        shard_module(encoder, [], mesh, mixed_precision_policy("bf16-mixed"))
        seen = []
        layer = encoder.transformer.encoder.layer[0]
        layer.intermediate.dense.register_forward_pre_hook(
            lambda m, args: seen.append(m.weight.dtype)
        )
        encoder.unpadded = True
        features = {k: v.to(CUDA) for k, v in encoder.tokenize(["a b c", "d"]).items()}
        encoder(features).float().sum().backward()
        assert seen == [torch.bfloat16]
        assert all(p.dtype == torch.float32 for p in encoder.parameters())
        grads = [p.grad for p in encoder.parameters() if p.grad is not None]
        assert grads and all(g.dtype == torch.float32 for g in grads)
    finally:
        dist.destroy_process_group()


def train_command(out: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "st_lightning.train",
        "+experiment=nli_triplet",
        "data.datasets.nli.split='train[:512]'",
        "data.batch_size=32",
        "trainer.max_steps=4",
        "trainer.log_every_n_steps=1",
        "export.best=false",
        *overrides,
        f"hydra.run.dir={out}",
    ]


def launch(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, cwd=REPO, env=run_env(REPO), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


def test_ddp_over_nccl_trains_and_evaluates_sharded_like_the_cpu(tmp_path):
    """The README's multi-GPU command on every GPU here (bf16, NCCL, gathered negatives), with
    the STS-B test evaluator sharded over the ranks: its metric equals sentence-transformers'
    evaluator on the exported model, run on the CPU."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import (
        EmbeddingSimilarityEvaluator,
    )

    from st_lightning.evaluation import suites

    out = tmp_path / "ddp"
    output = launch(
        train_command(
            out,
            "trainer=ddp",
            f"trainer.devices={gpus()}",
            "loss@losses.nli=mnrl_gathered",
            "evaluator=[sts_test]",
        )
    )
    assert "distributed_backend=nccl" in output
    assert len(losses_by_step(out)) == 4
    rows = (out / "eval" / "sts_test.csv").read_text().splitlines()
    header, last = rows[0].split(","), rows[-1].split(",")
    ours = float(last[header.index("spearman_cosine")])
    sts = suites.stsb("test", name="sts_test", data_dir=str(DATA))
    reference = EmbeddingSimilarityEvaluator(
        sts.sentences1, sts.sentences2, sts.scores.tolist(), name="sts_test"
    )(SentenceTransformer(str(out / "final"), device="cpu"))["sts_test_spearman_cosine"]
    assert ours == pytest.approx(reference, abs=5e-3)  # bf16 on the GPU, float32 on the CPU


def test_fsdp_command_on_gpus_trains_and_exports(tmp_path):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "fsdp"
    launch(
        train_command(
            out, "trainer=fsdp", f"trainer.devices={gpus()}", "loss@losses.nli=mnrl_gathered",
            "evaluator=[]",
        )
    )  # fmt: skip
    assert len(losses_by_step(out)) == 4
    model = SentenceTransformer(str(out / "final"), device="cpu")
    assert model.encode(["a"]).shape == (1, 384)
    assert MINILM in (out / "config.yaml").read_text()
