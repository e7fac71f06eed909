"""Gathered in-batch negatives: 2 processes x batch B equal 1 process x batch 2B."""

from __future__ import annotations

import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from dist_helpers import init_gloo, leave_gloo
from torch.nn.parallel import DistributedDataParallel

from st_lightning import losses
from st_lightning.encoders import tiny_encoder

B = 6
TEXTS = {
    "anchor": [f"query number {i} about topic {i % 4}" for i in range(2 * B)],
    "positive": [f"a passage that answers {i}" + " indeed" * (i % 3) for i in range(2 * B)],
    "negative": [f"an unrelated passage {i} on cooking" for i in range(2 * B)],
}
LOSSES = {
    "mnrl_triplets": lambda gather: losses.MultipleNegativesRankingLoss(
        gather_across_devices=gather
    ),
    "mnrl_all_directions": lambda gather: losses.MultipleNegativesRankingLoss(
        directions=("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"),
        gather_across_devices=gather,
    ),
    "mnsrl": lambda gather: losses.MultipleNegativesSymmetricRankingLoss(
        gather_across_devices=gather
    ),
}
# The control: in-batch negatives of the local batch only.
CONTROL = {"local_only": lambda gather: losses.MultipleNegativesRankingLoss()}


LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["query", "value"]}


def make_encoder(lora: bool):
    encoder = tiny_encoder(dropout=0.0, seed=1, lora=LORA if lora else None)
    if lora:  # the same adapter in every process; B nonzero, so A has a gradient too
        generator = torch.Generator().manual_seed(2)
        for name, param in encoder.named_parameters():
            if "lora_" in name:
                param.data = torch.randn(param.shape, generator=generator) * 0.05
    return encoder


def step(model, encoder, loss, rows):
    columns = [
        encoder.tokenize([TEXTS[c][i] for i in rows]) for c in ("anchor", "positive", "negative")
    ]
    value = loss([model(f) for f in columns], None)
    value.backward()
    return value.detach()


def worker(rank: int, world: int, init_file: str, out: str, name: str, lora: bool = False) -> None:
    init_gloo(rank, world, init_file)
    encoder = make_encoder(lora)
    encoder.freeze_unused()  # the pooler, as EmbeddingModule does: DDP needs every grad
    model = DistributedDataParallel(encoder)
    value = step(model, encoder, {**LOSSES, **CONTROL}[name](True), range(rank * B, (rank + 1) * B))
    dist.all_reduce(value)  # DDP averages gradients; the global loss is the mean too
    if rank == 0:
        grads = {n: p.grad for n, p in encoder.named_parameters() if p.grad is not None}
        torch.save({"loss": value / world, "grads": grads}, out)
    leave_gloo()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LOSSES))
def test_two_ranks_equal_one_rank_with_the_global_batch(name, tmp_path):
    out = str(tmp_path / "rank0.pt")
    init_file = tempfile.mktemp(dir=tmp_path)
    mp.spawn(worker, args=(2, init_file, out, name), nprocs=2, join=True)
    distributed = torch.load(out, weights_only=True)

    encoder = tiny_encoder(dropout=0.0, seed=1)
    expected = step(encoder, encoder, LOSSES[name](False), range(2 * B))
    torch.testing.assert_close(distributed["loss"], expected, rtol=1e-5, atol=1e-7)
    grads = {n: p.grad for n, p in encoder.named_parameters() if p.grad is not None}
    assert grads.keys() == distributed["grads"].keys()
    for n, g in grads.items():
        error = (distributed["grads"][n] - g).norm()
        assert error <= 1e-4 * g.norm() + 1e-8, (n, error.item())


@pytest.mark.slow
def test_two_ranks_with_adapters_equal_one_rank_with_the_global_batch(tmp_path):
    out = str(tmp_path / "rank0.pt")
    init_file = tempfile.mktemp(dir=tmp_path)
    mp.spawn(worker, args=(2, init_file, out, "mnrl_triplets", True), nprocs=2, join=True)
    distributed = torch.load(out, weights_only=True)

    encoder = make_encoder(lora=True)
    expected = step(encoder, encoder, LOSSES["mnrl_triplets"](False), range(2 * B))
    torch.testing.assert_close(distributed["loss"], expected, rtol=1e-5, atol=1e-7)
    grads = {n: p.grad for n, p in encoder.named_parameters() if p.grad is not None}
    assert len(grads) == 8 and all("lora_" in n for n in grads)  # adapters only
    assert grads.keys() == distributed["grads"].keys()
    for n, g in grads.items():
        assert g.norm() > 0
        error = (distributed["grads"][n] - g).norm()
        assert error <= 1e-4 * g.norm() + 1e-8, (n, error.item())


@pytest.mark.slow
def test_without_gathering_two_ranks_differ(tmp_path):
    """The control: local in-batch negatives alone do not give the global-batch loss."""
    out = str(tmp_path / "rank0.pt")
    init_file = tempfile.mktemp(dir=tmp_path)
    mp.spawn(worker, args=(2, init_file, out, "local_only"), nprocs=2, join=True)
    encoder = tiny_encoder(dropout=0.0, seed=1)
    expected = step(encoder, encoder, losses.MultipleNegativesRankingLoss(), range(2 * B))
    assert not torch.allclose(torch.load(out, weights_only=True)["loss"], expected, rtol=1e-3)
