"""Evaluator metrics on fixed embeddings, by hand, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from st_lightning import evaluation as ev
from st_lightning.evaluation.binary import average_precision, best_accuracy, best_f1


def one_hot(rows: list[int], dim: int = 4) -> torch.Tensor:
    return torch.eye(dim)[rows]


def test_triplet_accuracy_by_hand():
    e = ev.TripletEvaluator(["a", "b"], ["c", "d"], ["e", "f"], name="t")
    emb = {
        "anchors": one_hot([0, 1]),
        "positives": one_hot([0, 2]),  # first positive matches its anchor, second does not
        "negatives": one_hot([3, 1]),  # second negative equals its anchor
    }
    assert e.compute(emb) == {"cosine_accuracy": 0.5}


def test_sts_correlations_by_hand():
    e = ev.EmbeddingSimilarityEvaluator(["a", "b", "c"], ["d", "e", "f"], [0.1, 0.5, 0.9], name="s")
    angles = torch.tensor([1.2, 0.8, 0.1])  # more similar as the gold score grows
    a = torch.stack([torch.ones(3), torch.zeros(3)], 1)
    b = torch.stack([angles.cos(), angles.sin()], 1)
    metrics = e.compute({"sentences1": a, "sentences2": b})
    assert metrics["spearman_cosine"] == pytest.approx(1.0, abs=1e-5)  # torchmetrics adds an eps
    cos = angles.cos().numpy()
    assert metrics["pearson_cosine"] == pytest.approx(
        np.corrcoef(cos, [0.1, 0.5, 0.9])[0, 1], abs=1e-6
    )


def test_retrieval_metrics_by_hand():
    queries = {"q1": "x", "q2": "y"}
    corpus = {"d1": "1", "d2": "2", "d3": "3"}
    relevant = {"q1": {"d2"}, "q2": {"d1", "d3"}}
    e = ev.InformationRetrievalEvaluator(
        queries,
        corpus,
        relevant,
        accuracy_at_k=[1, 2],
        precision_recall_at_k=[2],
        mrr_at_k=[3],
        ndcg_at_k=[3],
        map_at_k=[3],
    )
    # q1 ranks d1 > d2 > d3 (relevant d2 at rank 2); q2 ranks d3 > d2 > d1 (relevant at 1 and 3).
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.tensor([[1.0, 0.1], [0.8, 0.6], [0.1, 1.0]])
    m = e.compute({"queries": q, "corpus": d})
    assert m["cosine_accuracy@1"] == 0.5 and m["cosine_accuracy@2"] == 1.0
    assert m["cosine_precision@2"] == pytest.approx((0.5 + 0.5) / 2)
    assert m["cosine_recall@2"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["cosine_mrr@3"] == pytest.approx((0.5 + 1.0) / 2)
    ndcg_q1 = (1 / math.log2(3)) / 1.0
    ndcg_q2 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["cosine_ndcg@3"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2)
    map_q2 = (1 / 1 + 2 / 3) / 2
    assert m["cosine_map@3"] == pytest.approx((0.5 + map_q2) / 2)


def test_binary_thresholds_by_hand():
    scores = np.array([0.9, 0.8, 0.3, 0.2], dtype=np.float32)
    labels = np.array([1, 1, 0, 0])
    acc, threshold = best_accuracy(scores, labels, True)
    assert acc == 1.0 and threshold == pytest.approx(0.55)
    f1, precision, recall, f1_threshold = best_f1(scores, labels, True)
    assert (f1, precision, recall) == (1.0, 1.0, 1.0) and f1_threshold == pytest.approx(0.55)
    assert average_precision(scores, labels) == 1.0
    assert average_precision(np.array([0.1, 0.9]), np.array([1, 0])) == pytest.approx(0.5)


def test_translation_and_mse_by_hand():
    t = ev.TranslationEvaluator(["a", "b"], ["c", "d"])
    m = t.compute({"source": one_hot([0, 1]), "target": one_hot([0, 0])})
    assert m["src2trg_accuracy"] == 0.5 and m["trg2src_accuracy"] == 0.5
    mse = ev.MSEEvaluator(torch.zeros(2, 4), ["c", "d"])
    assert mse.compute({"targets": torch.full((2, 4), 0.1)})["negative_mse"] == pytest.approx(-1.0)


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: ev.EmbeddingSimilarityEvaluator(["a"], ["b", "c"], [0.5]), "mismatched lengths"),
        (lambda: ev.TripletEvaluator([], [], []), "empty"),
        (lambda: ev.BinaryClassificationEvaluator(["a"], ["b"], [2]), "0 or 1"),
        (
            lambda: ev.InformationRetrievalEvaluator({"q": "x"}, {"d": "y"}, {"q": {"missing"}}),
            "missing from the",
        ),
        (lambda: ev.InformationRetrievalEvaluator({"q": "x"}, {"d": "y"}, {}), "no query"),
        (
            lambda: ev.EmbeddingSimilarityEvaluator(
                ["a"], ["b"], [1.0], similarity_fn_names=["l3"]
            ),
            "Unknown similarity",
        ),
        (lambda: ev.TripletEvaluator(["a"], ["b"], ["c"], name="x/y"), "without '/'"),
        (lambda: ev.ParaphraseMiningEvaluator({"1": "a", "2": "b"}, [("1", "3")]), "unknown ids"),
        (
            lambda: ev.RerankingEvaluator([{"query": "q", "positive": [], "negative": ["n"]}]),
            "no sample",
        ),
    ],
)
def test_bad_input(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_non_string_texts(tiny):
    e = ev.TripletEvaluator(["a", 3], ["b", "c"], ["d", "e"])
    with pytest.raises(TypeError, match="item 1"):
        e.evaluate(tiny)


def test_evaluate_embeds_each_distinct_text_once(tiny):
    seen = []

    def encode(texts, prompt):
        seen.extend(texts)
        return tiny.encode(list(texts), convert_to="tensor")

    e = ev.BinaryClassificationEvaluator(["a", "b", "a"], ["b", "c", "c"], [1, 0, 1])
    e.evaluate(encode)
    assert sorted(seen) == ["a", "b", "c"]
