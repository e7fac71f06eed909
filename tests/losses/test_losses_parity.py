"""Every loss against sentence-transformers' loss of the same name: same value, same gradients.

The reference losses are fed the same embeddings through a stub model that returns them, or
through their `compute_loss_from_embeddings`.
"""

from __future__ import annotations

import copy

import pytest
import torch
from sentence_transformers.sentence_transformer import losses as st
from torch import nn

from st_lightning import losses as ours

B, D = 12, 16


class Stub(nn.Module):
    """Stands in for a SentenceTransformer: returns the embeddings it is handed."""

    device = torch.device("cpu")

    def forward(self, features):
        return {"sentence_embedding": features["emb"]}

    def get_embedding_dimension(self):
        return D

    get_sentence_embedding_dimension = get_embedding_dimension
    # sentence-transformers 6.3's MatryoshkaLoss asks for the dimension before truncation.
    _get_untruncated_embedding_dimension = get_embedding_dimension


STUB = Stub()


def scores():
    return torch.rand(B, dtype=torch.float64)


def binary():
    return torch.tensor([0, 1] * (B // 2), dtype=torch.float64)[torch.randperm(B)]


def classes():
    return torch.randint(0, 3, (B,))


def groups():
    return torch.arange(B) % 4  # several rows per label, as group_by_label batches have


def teacher_embeddings():
    return torch.randn(B, D, dtype=torch.float64)


def teacher_embeddings_3d():
    return torch.randn(B, 2, D, dtype=torch.float64)


def no_label():
    return None


def margins(k):
    return lambda: torch.randn(B, k, dtype=torch.float64)


# id: (our loss, the reference, number of columns, label maker); the losses are built in
# the test, so a reference release that refuses one case fails that case, not collection.
CASES = {
    "mnrl_pairs": (
        lambda: ours.MultipleNegativesRankingLoss(),
        lambda: st.MultipleNegativesRankingLoss(STUB),
        2,
        no_label,
    ),
    "mnrl_triplets": (
        lambda: ours.MultipleNegativesRankingLoss(),
        lambda: st.MultipleNegativesRankingLoss(STUB),
        3,
        no_label,
    ),
    "mnrl_3_negatives_dot": (
        lambda: ours.MultipleNegativesRankingLoss(scale=1.0, similarity="dot"),
        lambda: st.MultipleNegativesRankingLoss(
            STUB, scale=1.0, similarity_fct=lambda a, b: a @ b.T
        ),
        5,
        no_label,
    ),
    "mnrl_gte_all_directions": (
        lambda: ours.MultipleNegativesRankingLoss(
            directions=("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
        ),
        lambda: st.MultipleNegativesRankingLoss(
            STUB, directions=("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
        ),
        3,
        no_label,
    ),
    "mnrl_symmetric_per_direction": (
        lambda: ours.MultipleNegativesRankingLoss(
            directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction"
        ),
        lambda: st.MultipleNegativesRankingLoss(
            STUB, directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction"
        ),
        3,
        no_label,
    ),
    **{
        f"mnrl_hardness_{mode}": (
            lambda mode=mode: ours.MultipleNegativesRankingLoss(
                hardness_mode=mode, hardness_strength=5.0
            ),
            lambda mode=mode: st.MultipleNegativesRankingLoss(
                STUB, hardness_mode=mode, hardness_strength=5.0
            ),
            4,
            no_label,
        )
        for mode in ("in_batch_negatives", "hard_negatives", "all_negatives")
    },
    "mnsrl": (
        lambda: ours.MultipleNegativesSymmetricRankingLoss(),
        lambda: st.MultipleNegativesSymmetricRankingLoss(STUB),
        2,
        no_label,
    ),
    "cosent": (lambda: ours.CoSENTLoss(), lambda: st.CoSENTLoss(STUB), 2, scores),
    "angle": (lambda: ours.AnglELoss(), lambda: st.AnglELoss(STUB), 2, scores),
    "cosine_similarity": (
        lambda: ours.CosineSimilarityLoss(),
        lambda: st.CosineSimilarityLoss(STUB),
        2,
        scores,
    ),
    "contrastive": (lambda: ours.ContrastiveLoss(), lambda: st.ContrastiveLoss(STUB), 2, binary),
    "contrastive_euclidean_sum": (
        lambda: ours.ContrastiveLoss(distance="euclidean", margin=2.0, average=False),
        lambda: st.ContrastiveLoss(
            STUB, distance_metric=st.SiameseDistanceMetric.EUCLIDEAN, margin=2.0, size_average=False
        ),
        2,
        binary,
    ),
    "online_contrastive": (
        lambda: ours.OnlineContrastiveLoss(),
        lambda: st.OnlineContrastiveLoss(STUB),
        2,
        binary,
    ),
    "triplet": (lambda: ours.TripletLoss(), lambda: st.TripletLoss(STUB), 3, no_label),
    "triplet_cosine": (
        lambda: ours.TripletLoss(distance="cosine", margin=0.3),
        lambda: st.TripletLoss(
            STUB, distance_metric=st.TripletDistanceMetric.COSINE, triplet_margin=0.3
        ),
        3,
        no_label,
    ),
    "triplet_manhattan": (
        lambda: ours.TripletLoss(distance="manhattan", margin=1.0),
        lambda: st.TripletLoss(
            STUB, distance_metric=st.TripletDistanceMetric.MANHATTAN, triplet_margin=1.0
        ),
        3,
        no_label,
    ),
    "batch_all": (
        lambda: ours.BatchAllTripletLoss(),
        lambda: st.BatchAllTripletLoss(STUB),
        1,
        groups,
    ),
    "batch_hard": (
        lambda: ours.BatchHardTripletLoss(),
        lambda: st.BatchHardTripletLoss(STUB),
        1,
        groups,
    ),
    "batch_hard_cosine": (
        lambda: ours.BatchHardTripletLoss(distance="cosine", margin=0.5),
        lambda: st.BatchHardTripletLoss(
            STUB,
            distance_metric=st.BatchHardTripletLossDistanceFunction.cosine_distance,
            margin=0.5,
        ),
        1,
        groups,
    ),
    "batch_semi_hard": (
        lambda: ours.BatchSemiHardTripletLoss(),
        lambda: st.BatchSemiHardTripletLoss(STUB),
        1,
        groups,
    ),
    "batch_semi_hard_small_margin": (
        lambda: ours.BatchSemiHardTripletLoss(margin=0.5),
        lambda: st.BatchSemiHardTripletLoss(STUB, margin=0.5),
        1,
        groups,
    ),
    "batch_hard_soft_margin": (
        lambda: ours.BatchHardSoftMarginTripletLoss(),
        lambda: st.BatchHardSoftMarginTripletLoss(STUB),
        1,
        groups,
    ),
    "mse": (lambda: ours.MSELoss(), lambda: st.MSELoss(STUB), 1, teacher_embeddings),
    "mse_two_columns_3d_labels": (
        lambda: ours.MSELoss(),
        lambda: st.MSELoss(STUB),
        2,
        teacher_embeddings_3d,
    ),
    "embed_distill_cosine": (
        lambda: ours.EmbedDistillLoss(),
        lambda: st.EmbedDistillLoss(STUB),
        2,
        teacher_embeddings,
    ),
    "embed_distill_l2": (
        lambda: ours.EmbedDistillLoss(distance="l2"),
        lambda: st.EmbedDistillLoss(STUB, distance_metric="l2"),
        1,
        teacher_embeddings,
    ),
    "margin_mse": (lambda: ours.MarginMSELoss(), lambda: st.MarginMSELoss(STUB), 3, margins(1)),
    "margin_mse_3_negatives_scores": (
        lambda: ours.MarginMSELoss(),
        lambda: st.MarginMSELoss(STUB),
        5,
        margins(4),
    ),
    "distill_kl_div": (
        lambda: ours.DistillKLDivLoss(),
        lambda: st.DistillKLDivLoss(STUB),
        3,
        margins(2),
    ),
    "distill_kl_div_temperatures": (
        lambda: ours.DistillKLDivLoss(
            similarity="cosine", student_temperature=0.05, teacher_temperature=2.0
        ),
        lambda: st.DistillKLDivLoss(
            STUB,
            similarity_fct=lambda a, b: torch.cosine_similarity(a, b, dim=-1),
            student_temperature=0.05,
            teacher_temperature=2.0,
        ),
        4,
        margins(3),
    ),
    "gor": (
        lambda: ours.GlobalOrthogonalRegularizationLoss(),
        lambda: st.GlobalOrthogonalRegularizationLoss(STUB),
        2,
        no_label,
    ),
    "gor_sum_weighted": (
        lambda: ours.GlobalOrthogonalRegularizationLoss(
            mean_weight=0.5, second_moment_weight=2.0, aggregation="sum"
        ),
        lambda: st.GlobalOrthogonalRegularizationLoss(
            STUB, mean_weight=0.5, second_moment_weight=2.0, aggregation="sum"
        ),
        3,
        no_label,
    ),
    "mega_batch_margin": (
        lambda: ours.MegaBatchMarginLoss(),
        lambda: st.MegaBatchMarginLoss(STUB, use_mini_batched_version=False),
        2,
        no_label,
    ),
    "matryoshka_mnrl": (
        lambda: ours.MatryoshkaLoss(
            ours.MultipleNegativesRankingLoss(), [16, 8, 4], [1.0, 0.5, 0.25]
        ),
        lambda: st.MatryoshkaLoss(
            STUB, st.MultipleNegativesRankingLoss(STUB), [16, 8, 4], [1.0, 0.5, 0.25]
        ),
        3,
        no_label,
    ),
    "matryoshka_cosent": (
        lambda: ours.MatryoshkaLoss(ours.CoSENTLoss(), [16, 4]),
        lambda: st.MatryoshkaLoss(STUB, st.CoSENTLoss(STUB), [16, 4]),
        2,
        scores,
    ),
    "matryoshka_mse_truncates_teacher": (
        lambda: ours.MatryoshkaLoss(ours.MSELoss(), [16, 8]),
        lambda: st.MatryoshkaLoss(STUB, st.MSELoss(STUB), [16, 8]),
        1,
        teacher_embeddings,
    ),
}


def total(value) -> torch.Tensor:
    return sum(value.values()) if isinstance(value, dict) else value


def run_reference(loss, embeddings, labels):
    if hasattr(loss, "compute_loss_from_embeddings") and not isinstance(loss, st.EmbedDistillLoss):
        return loss.compute_loss_from_embeddings(embeddings, labels)
    return loss([{"emb": e} for e in embeddings], labels)


@pytest.mark.parametrize("case", list(CASES))
def test_same_value_and_gradients_as_sentence_transformers(case):
    make_mine, make_ref, columns, make_labels = CASES[case]
    mine, ref = make_mine(), make_ref()
    torch.manual_seed(sum(map(ord, case)))
    base = [torch.randn(B, D, dtype=torch.float64) for _ in range(columns)]
    labels = make_labels()

    x1 = [e.clone().requires_grad_() for e in base]
    value = mine(x1, labels)
    total(value).backward()
    x2 = [e.clone().requires_grad_() for e in base]
    expected = run_reference(ref, x2, labels)
    total(expected).backward()

    if isinstance(expected, dict):
        assert value.keys() == expected.keys()
    torch.testing.assert_close(
        total(value), total(expected).to(torch.float64), rtol=1e-5, atol=1e-8
    )
    for ours_x, ref_x in zip(x1, x2, strict=True):
        assert ours_x.grad is not None
        torch.testing.assert_close(ours_x.grad, ref_x.grad, rtol=1e-4, atol=1e-8)


def test_softmax_loss_matches_with_the_same_classifier():
    mine = ours.SoftmaxLoss(
        embedding_dimension=D, num_labels=3, concatenation_sent_multiplication=True
    )
    ref = st.SoftmaxLoss(STUB, D, 3, concatenation_sent_multiplication=True)
    ref.classifier.load_state_dict(copy.deepcopy(mine.classifier.state_dict()))
    mine.double()
    ref.double()
    torch.manual_seed(0)
    base = [torch.randn(B, D, dtype=torch.float64) for _ in range(2)]
    labels = classes()
    x1 = [e.clone().requires_grad_() for e in base]
    x2 = [e.clone().requires_grad_() for e in base]
    value, expected = mine(x1, labels), ref([{"emb": e} for e in x2], labels)
    value.backward()
    expected.backward()
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-8)
    for a, b in zip(x1, x2, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-8)
    torch.testing.assert_close(
        mine.classifier.weight.grad, ref.classifier.weight.grad, rtol=1e-4, atol=1e-8
    )


class GuidedStub(Stub):
    """A stub with a tokenizer (the reference checks for one) that returns `key`'s tensor."""

    max_seq_length = 128

    def __init__(self, key: str, tokenizer) -> None:
        super().__init__()
        self.key = key
        self.tokenizer = tokenizer

    def forward(self, features):
        return {"sentence_embedding": features[self.key]}


@pytest.mark.parametrize("columns", [2, 3])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"margin_strategy": "absolute", "margin": 0.1, "temperature": 0.05},
        {"margin_strategy": "relative", "margin": 0.2, "contrast_anchors": False},
        {"contrast_positives": False},
    ],
)
def test_gist_matches_sentence_transformers(columns, kwargs, tiny):
    ref = st.GISTEmbedLoss(
        GuidedStub("emb", tiny.tokenizer), GuidedStub("guide", tiny.tokenizer), **kwargs
    )
    mine = ours.GISTEmbedLoss(**kwargs)
    torch.manual_seed(columns)
    base = [torch.randn(B, D, dtype=torch.float64) for _ in range(columns)]
    # Guides close to the embeddings, with some near-duplicates so that masking happens.
    guides = [e + 0.3 * torch.randn_like(e) for e in base]
    guides[1][1] = guides[0][0]
    x1 = [e.clone().requires_grad_() for e in base]
    x2 = [e.clone().requires_grad_() for e in base]
    value = mine(x1, None, guide_embeddings=guides)
    expected = ref([{"emb": e, "guide": g} for e, g in zip(x2, guides, strict=True)], None)
    value.backward()
    expected.backward()
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-8)
    for a, b in zip(x1, x2, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-8)


def test_gist_guide_encoder_embeds_texts(tiny):
    loss = ours.GISTEmbedLoss(guide=tiny)
    guides = loss.embed_guide([["a b", "c"], ["d", "e f g"]], torch.device("cpu"))
    assert [g.shape for g in guides] == [(2, 32), (2, 32)]
    assert not any(p.requires_grad for p in tiny.parameters())
    assert "guide_encoder" not in dict(loss.named_modules()) and not list(loss.parameters())
