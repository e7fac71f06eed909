"""Sharded evaluation: 2 ranks each embed half the texts and compute the single-process metrics."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.multiprocessing as mp
from dist_helpers import init_gloo, leave_gloo

from st_lightning.evaluation.base import embed_groups, encoder_fn
from st_lightning.evaluation.sharding import shard_bounds, sharded_encoder

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data")


def evaluators():
    from st_lightning.evaluation import suites

    return [
        suites.stsb("test[:101]", data_dir=DATA),
        suites.nli_triplets("test[:57]", data_dir=DATA),
        suites.scifact("test", data_dir=DATA, max_queries=5, corpus_chunk_size=1000),
    ]


def worker(rank: int, world: int, init_file: str, out: str) -> None:
    init_gloo(rank, world, init_file)
    from st_lightning.encoders import tiny_encoder

    encoder = tiny_encoder(seed=3).eval()
    seen: list[str] = []
    local = encoder_fn(encoder, 32)

    def counting(texts, prompt):
        seen.extend(texts)
        return local(texts, prompt)

    encode = sharded_encoder(counting, rank, world)
    results = {}
    for ev in evaluators():
        results[ev.name] = ev.compute(embed_groups(ev.inputs(), encode, 32, ev.truncate_dim))
    torch.save({"metrics": results, "seen": seen}, f"{out}.{rank}")
    leave_gloo()


@pytest.mark.slow
def test_two_ranks_compute_the_single_process_metrics(tmp_path):
    from st_lightning.encoders import tiny_encoder

    out = str(tmp_path / "rank")
    mp.spawn(worker, args=(2, tempfile.mktemp(dir=tmp_path), out), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.{r}", weights_only=False) for r in range(2)]
    assert ranks[0]["metrics"] == ranks[1]["metrics"]  # identical on every rank
    encoder = tiny_encoder(seed=3).eval()
    for ev in evaluators():
        single = ev.evaluate(encoder)
        for key, value in single.items():
            assert ranks[0]["metrics"][ev.name][key] == pytest.approx(value, abs=1e-5), (
                ev.name,
                key,
            )
    # Each rank embedded about half of the distinct texts (plus at most one padding row per call).
    total = sum(len(r["seen"]) for r in ranks)
    distinct = sum(len({t for g in ev.inputs().values() for t in g.texts}) for ev in evaluators())
    assert abs(len(ranks[0]["seen"]) - len(ranks[1]["seen"])) <= 3
    assert distinct <= total <= distinct + 3 * 2


def test_shard_bounds_cover_everything_once():
    for n in (0, 1, 5, 10, 11):
        spans = [shard_bounds(n, r, 3) for r in range(3)]
        rows = [i for a, b in spans for i in range(a, b)]
        assert rows == list(range(n))


def test_single_process_sharded_encoder_is_plain(tiny):
    texts = ["a b", "c", "d e f"]
    plain = encoder_fn(tiny.eval(), 2)
    torch.testing.assert_close(sharded_encoder(plain, 0, 1)(texts, None), plain(texts, None))


def test_sharded_encoder_with_a_fake_two_rank_gather(tiny):
    """The gather protocol without processes: rank 0's view, with rank 1's rows faked."""
    texts = [f"text number {i}" for i in range(7)]
    plain = encoder_fn(tiny.eval(), 3)
    full = plain(texts, None)

    def fake_all_gather(x):
        if x.dim() == 2:  # embeddings: rank 1 holds rows 4..7 (padded with the last text)
            other = plain(texts[4:] + [texts[-1]], None)
            return torch.stack([x, other])
        return torch.stack([x, x])

    got = sharded_encoder(plain, 0, 2, all_gather=fake_all_gather)(texts, None)
    torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-5)
