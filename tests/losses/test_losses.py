"""Loss behaviour beyond parity: hand-computed cases, input validation, configs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from st_lightning import losses

EYE2 = torch.eye(2, dtype=torch.float64)


def test_mnrl_two_by_two_by_hand():
    # Orthogonal unit vectors: cos = identity, so loss = -log(e^2 / (e^2 + e^0)) with scale 2.
    value = losses.MultipleNegativesRankingLoss(scale=2.0)([EYE2, EYE2])
    assert value.item() == pytest.approx(math.log1p(math.exp(-2.0)), rel=1e-6)
    # Positives swapped: each anchor's own positive is the orthogonal one.
    swapped = losses.MultipleNegativesRankingLoss(scale=2.0)([EYE2, EYE2.flip(0)])
    assert swapped.item() == pytest.approx(math.log1p(math.exp(2.0)), rel=1e-6)


def test_cosent_by_hand():
    # Pair 0 has cos 1 but the lower gold score: the one ordered pair costs exp(20 * (1 - 0)).
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    value = losses.CoSENTLoss()([a, b], torch.tensor([0.2, 0.8]))
    assert value.item() == pytest.approx(math.log1p(math.exp(20.0)), rel=1e-9)
    right_order = losses.CoSENTLoss()([a, b], torch.tensor([0.8, 0.2]))
    assert right_order.item() == pytest.approx(math.log1p(math.exp(-20.0)), rel=1e-6)


def test_triplet_by_hand():
    a, p, n = torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]]), torch.tensor([[6.0, 8.0]])
    value = losses.TripletLoss(margin=1.0)([a, p, n])  # relu(5 - 10 + 1) = 0
    assert value.item() == 0.0
    swapped = losses.TripletLoss(margin=1.0)([a, n, p])
    assert swapped.item() == pytest.approx(10.0 - 5.0 + 1.0, rel=1e-5)


@pytest.mark.parametrize(
    "loss,label",
    [
        (losses.MultipleNegativesRankingLoss(), None),
        (losses.MultipleNegativesSymmetricRankingLoss(), None),
        (losses.MegaBatchMarginLoss(), None),
        (losses.CoSENTLoss(), "ones"),
        (losses.AnglELoss(), "ones"),
        (losses.CosineSimilarityLoss(), "ones"),
        (losses.ContrastiveLoss(), "ones"),
        (losses.MatryoshkaLoss(losses.MultipleNegativesRankingLoss(), [16, 4]), None),
    ],
)
def test_aligned_pairs_beat_shuffled_pairs(loss, label):
    torch.manual_seed(0)
    anchors = F.normalize(torch.randn(16, 16), dim=1)
    positives = F.normalize(anchors + 0.1 * torch.randn(16, 16), dim=1)
    labels = torch.ones(16) if label else None
    if isinstance(loss, losses.CoSENTLoss):  # CoSENT needs a ranking: aligned pairs score higher
        shuffled = positives[torch.randperm(16)]
        both_a, both_b = (
            torch.cat([anchors[:8], anchors[8:]]),
            torch.cat([positives[:8], shuffled[8:]]),
        )
        good = loss([both_a, both_b], torch.cat([torch.ones(8), torch.zeros(8)]))
        bad = loss([both_a, both_b], torch.cat([torch.zeros(8), torch.ones(8)]))
    else:
        good = loss([anchors, positives], labels)
        bad = loss([anchors, positives[torch.randperm(16)]], labels)
    total = lambda v: sum(v.values()) if isinstance(v, dict) else v  # noqa: E731
    assert total(good) < total(bad)


def test_components_are_named():
    x = [torch.randn(8, 16), torch.randn(8, 16)]
    gor = losses.GlobalOrthogonalRegularizationLoss()(x)
    assert set(gor) == {"gor_mean", "gor_second_moment"}
    mat = losses.MatryoshkaLoss(losses.MultipleNegativesRankingLoss(), [16, 8], [1.0, 0.5])(x)
    assert list(mat) == ["dim_16", "dim_8"]


def test_matryoshka_n_dims_per_step_samples_a_subset():
    loss = losses.MatryoshkaLoss(
        losses.MultipleNegativesRankingLoss(), [16, 8, 4, 2], n_dims_per_step=2
    )
    torch.manual_seed(0)
    seen = {tuple(loss([torch.randn(4, 16), torch.randn(4, 16)])) for _ in range(30)}
    assert all(len(keys) == 2 for keys in seen) and len(seen) > 2


def test_loss_parameters_are_trainable():
    loss = losses.SoftmaxLoss(embedding_dimension=16, num_labels=3)
    loss([torch.randn(4, 16), torch.randn(4, 16)], torch.tensor([0, 1, 2, 1])).backward()
    assert loss.classifier.weight.grad is not None and loss.classifier.weight.grad.abs().sum() > 0


# ---- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "loss,inputs,label,match",
    [
        (losses.MultipleNegativesRankingLoss(), ["anchor"], None, "it has 1 input column"),
        (losses.TripletLoss(), ["anchor", "positive"], None, "it has 2 input columns"),
        (losses.CoSENTLoss(), ["sentence1", "sentence2"], None, "no label column"),
        (losses.MultipleNegativesRankingLoss(), ["a", "p"], "label", "does not use"),
        (losses.BatchHardTripletLoss(), ["a", "b"], "label", "it has 2 input columns"),
    ],
)
def test_wrong_columns_are_named(loss, inputs, label, match):
    with pytest.raises(ValueError, match=match) as err:
        loss.check_columns("nli", inputs, label)
    message = str(err.value)
    assert "'nli'" in message and type(loss).__name__ in message and "expects" in message


def test_accepted_columns_pass():
    losses.MultipleNegativesRankingLoss().check_columns("nli", ["a", "p", "n1", "n2"], None)
    losses.CoSENTLoss().check_columns("sts", ["s1", "s2"], "score")
    losses.MatryoshkaLoss(losses.CoSENTLoss(), [8]).check_columns("sts", ["s1", "s2"], "score")
    assert losses.MatryoshkaLoss(losses.CoSENTLoss(), [8]).describe_inputs().startswith("2 input")


@pytest.mark.parametrize(
    "loss,labels,match",
    [
        (losses.CoSENTLoss(), torch.tensor([0, 1]), "integer labels"),
        (losses.CoSENTLoss(), torch.tensor([0.5, float("nan")]), "NaN"),
        (losses.SoftmaxLoss(8, 3), torch.tensor([0.5, 1.0]), "integer class ids"),
        (losses.SoftmaxLoss(8, 3), torch.tensor([-1, 1]), "integer class ids"),
        (losses.ContrastiveLoss(), torch.tensor([0, 2]), "other than 0 and 1"),
        (losses.MSELoss(), torch.tensor([0.1, 0.2]), "teacher embeddings"),
    ],
)
def test_wrong_label_kind(loss, labels, match):
    with pytest.raises(ValueError, match=match):
        loss.check_labels("train", labels)


def test_matryoshka_dims_larger_than_embedding():
    loss = losses.MatryoshkaLoss(losses.MultipleNegativesRankingLoss(), [64, 32])
    with pytest.raises(
        ValueError, match=r"matryoshka_dims \[64\] exceed the embedding dimension 32"
    ):
        loss.check_embedding_dimension(32)
    with pytest.raises(ValueError, match="exceed"):
        loss([torch.randn(4, 32), torch.randn(4, 32)])


@pytest.mark.parametrize(
    "build,match",
    [
        (
            lambda: losses.MultipleNegativesRankingLoss(similarity="cos"),
            "Unknown similarity function 'cos'",
        ),
        (lambda: losses.CoSENTLoss(similarity="l2"), "Unknown similarity function"),
        (lambda: losses.TripletLoss(distance="cosine_distance"), "Unknown distance metric"),
        (lambda: losses.MultipleNegativesRankingLoss(scale=0), "scale must be > 0"),
        (lambda: losses.MultipleNegativesRankingLoss(directions=("doc_to_query",)), "query_to_doc"),
        (
            lambda: losses.MultipleNegativesRankingLoss(
                directions=("query_to_doc", "query_to_query"), partition_mode="per_direction"
            ),
            "joint",
        ),
        (lambda: losses.MatryoshkaLoss(losses.CoSENTLoss(), [8, 4], [1.0]), "one weight per"),
        (lambda: losses.MatryoshkaLoss(losses.CoSENTLoss(), []), "positive integers"),
        (lambda: losses.SoftmaxLoss(8, 1), "num_labels"),
        (lambda: losses.MSELoss(projection_dim=8), "embedding_dimension"),
    ],
)
def test_bad_configuration(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_softmax_checks_the_embedding_width():
    with pytest.raises(ValueError, match="embedding_dimension=16"):
        losses.SoftmaxLoss(8, 3).check_embedding_dimension(16)


def test_config_is_plain_data_for_the_model_card():
    assert losses.MultipleNegativesRankingLoss(scale=30).config() == {
        "scale": 30,
        "similarity": "cosine",
        "directions": ["query_to_doc"],
        "partition_mode": "joint",
        "hardness_mode": None,
        "hardness_strength": 0.0,
        "gather_across_devices": False,
    }
    nested = losses.MatryoshkaLoss(losses.CoSENTLoss(), [8, 4]).config()
    assert nested["loss"] == {"class": "CoSENTLoss", "scale": 20.0, "similarity": "cosine"}
    assert nested["matryoshka_dims"] == [8, 4]
    assert "@" in losses.CoSENTLoss.citation
