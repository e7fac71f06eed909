"""Every evaluator against sentence-transformers' evaluator of the same name: same metrics.

Both run the packaged all-MiniLM-L6-v2 on subsets of the bundled data (each library embedding
with its own code), so this checks the encoding and the metric definitions together.
"""

from __future__ import annotations

import random

import pytest
import torch
from conftest import DATA
from sentence_transformers.sentence_transformer import evaluation as st

from st_lightning import evaluation as ours
from st_lightning.data import DatasetSpec, load_source
from st_lightning.evaluation import suites

FNS = ["cosine", "dot", "euclidean", "manhattan"]


def assert_same(mine: dict[str, float], reference: dict[str, float], name: str, tol: float = 1e-4):
    expected = {k.removeprefix(f"{name}_"): float(v) for k, v in reference.items()}
    assert mine.keys() >= expected.keys() - {"max_accuracy_threshold", "max_f1_threshold"}, sorted(
        expected.keys() - mine.keys()
    )
    for key, value in expected.items():
        if key in mine:
            assert mine[key] == pytest.approx(value, abs=tol), key


@pytest.fixture(scope="module")
def quora():
    rows = load_source(
        DatasetSpec(str(DATA / "quora-duplicates"), "pair-class", "train[:400]"), "q"
    )
    return rows.to_dict()


def test_embedding_similarity(minilm, st_minilm):
    rows = load_source(DatasetSpec(str(DATA / "stsb"), split="test[:300]"), "sts")
    args = (rows["sentence1"], rows["sentence2"], rows["score"])
    mine = ours.EmbeddingSimilarityEvaluator(*args, name="sts", similarity_fn_names=FNS).evaluate(
        minilm
    )
    ref = st.EmbeddingSimilarityEvaluator(*args, name="sts", similarity_fn_names=FNS)(st_minilm)
    assert_same(mine, ref, "sts")


def test_triplet(minilm, st_minilm):
    rows = load_source(DatasetSpec(str(DATA / "all-nli"), "triplet", "test[:300]"), "nli")
    args = (rows["anchor"], rows["positive"], rows["negative"])
    mine = ours.TripletEvaluator(*args, name="nli", similarity_fn_names=FNS).evaluate(minilm)
    ref = st.TripletEvaluator(*args, name="nli", similarity_fn_names=FNS)(st_minilm)
    assert_same(mine, ref, "nli")
    with_margin = ours.TripletEvaluator(*args, name="m", margin=0.2).evaluate(minilm)
    ref_margin = st.TripletEvaluator(*args, name="m", margin={"cosine": 0.2})(st_minilm)
    assert_same(with_margin, ref_margin, "m")


def small_scifact():
    full = suites.scifact("test", data_dir=str(DATA), max_queries=40)
    wanted = {d for docs in full.relevant.values() for d in docs}
    corpus = {d: t for d, t in zip(full.corpus_ids, full.corpus, strict=True)}
    ids = sorted(wanted) + [d for d in full.corpus_ids if d not in wanted][:250]
    queries = dict(zip(full.query_ids, full.queries, strict=True))
    return queries, {d: corpus[d] for d in ids}, {q: full.relevant[q] for q in full.query_ids}


def test_information_retrieval(minilm, st_minilm):
    queries, corpus, relevant = small_scifact()
    kwargs = {"mrr_at_k": [5, 10], "ndcg_at_k": [3, 10], "map_at_k": [10, 100]}
    mine = ours.InformationRetrievalEvaluator(
        queries, corpus, relevant, name="ir", corpus_chunk_size=100, **kwargs
    ).evaluate(minilm)
    ref = st.InformationRetrievalEvaluator(queries, corpus, relevant, name="ir", **kwargs)(
        st_minilm
    )
    assert_same(mine, ref, "ir")
    assert mine["cosine_ndcg@10"] > 0.5


def test_binary_classification(minilm, st_minilm, quora):
    args = (quora["sentence1"], quora["sentence2"], quora["label"])
    mine = ours.BinaryClassificationEvaluator(*args, name="dup", similarity_fn_names=FNS).evaluate(
        minilm
    )
    ref = st.BinaryClassificationEvaluator(*args, name="dup", similarity_fn_names=FNS)(st_minilm)
    assert_same(mine, ref, "dup")


def test_reranking(minilm, st_minilm):
    queries, corpus, relevant = small_scifact()
    docs = list(corpus.values())
    rng = random.Random(0)
    samples = [
        {
            "query": queries[q],
            "positive": [corpus[d] for d in relevant[q]],
            "negative": rng.sample(docs, 8),
        }
        for q in list(queries)[:30]
    ]
    mine = ours.RerankingEvaluator(samples, name="rr", at_k=5).evaluate(minilm)
    ref = st.RerankingEvaluator(samples, name="rr", at_k=5)(st_minilm)
    assert_same(mine, ref, "rr")


def test_paraphrase_mining(minilm, st_minilm, quora):
    sentences, ids = {}, {}
    for text in quora["sentence1"] + quora["sentence2"]:
        ids.setdefault(text, str(len(ids)))
    sentences = {i: t for t, i in ids.items()}
    duplicates = [
        (ids[a], ids[b])
        for a, b, y in zip(quora["sentence1"], quora["sentence2"], quora["label"], strict=True)
        if y == 1
    ]
    mine = ours.ParaphraseMiningEvaluator(sentences, duplicates, name="pm", top_k=20).evaluate(
        minilm
    )
    ref = st.ParaphraseMiningEvaluator(sentences, duplicates, name="pm", top_k=20)(st_minilm)
    assert_same(mine, ref, "pm")


def test_translation(minilm, st_minilm, quora):
    pairs = [
        (a, b)
        for a, b, y in zip(quora["sentence1"], quora["sentence2"], quora["label"], strict=True)
        if y
    ]
    src, trg = [a for a, _ in pairs], [b for _, b in pairs]
    mine = ours.TranslationEvaluator(src, trg, name="tr").evaluate(minilm)
    ref = st.TranslationEvaluator(src, trg, name="tr")(st_minilm)
    assert_same(mine, ref, "tr")


def test_mse(minilm, st_minilm, tiny, tmp_path):
    from sentence_transformers import SentenceTransformer

    student = tiny
    student.dense.append(__import__("st_lightning").encoders.Dense(32, 384))
    reference_student = SentenceTransformer(
        str(student.save_pretrained(tmp_path / "s")), device="cpu"
    )
    rows = load_source(DatasetSpec(str(DATA / "stsb"), split="test[:100]"), "sts")
    teacher = minilm.encode(rows["sentence1"], convert_to="tensor")
    mine = ours.MSEEvaluator(teacher, rows["sentence2"], name="mse").evaluate(student)
    ref = st.MSEEvaluator(
        rows["sentence1"], rows["sentence2"], teacher_model=st_minilm, name="mse"
    )(reference_student)
    assert_same(mine, ref, "mse")


def test_label_accuracy(minilm, st_minilm):
    from sentence_transformers.sentence_transformer import losses as st_losses
    from sentence_transformers.sentence_transformer.readers import InputExample
    from torch.utils.data import DataLoader

    from st_lightning.losses import SoftmaxLoss

    rows = load_source(DatasetSpec(str(DATA / "all-nli"), "pair-class", "test[:120]"), "nli")
    softmax = SoftmaxLoss(384, 3)
    torch.nn.init.normal_(softmax.classifier.weight, std=2.0)
    reference_loss = st_losses.SoftmaxLoss(st_minilm, 384, 3)
    reference_loss.classifier.load_state_dict(softmax.classifier.state_dict())
    args = (rows["premise"], rows["hypothesis"], rows["label"])
    mine = ours.LabelAccuracyEvaluator(*args, softmax_loss=softmax, name="acc").evaluate(minilm)
    examples = [InputExample(texts=[a, b], label=y) for a, b, y in zip(*args, strict=True)]
    loader = DataLoader(examples, batch_size=16)
    ref = st.LabelAccuracyEvaluator(loader, name="acc", softmax_model=reference_loss)(st_minilm)
    assert_same(mine, ref, "acc")


def test_sequential_prefixes_and_primary(minilm):
    rows = load_source(DatasetSpec(str(DATA / "stsb"), split="test[:50]"), "sts")
    a = ours.EmbeddingSimilarityEvaluator(
        rows["sentence1"], rows["sentence2"], rows["score"], name="a"
    )
    b = ours.EmbeddingSimilarityEvaluator(
        rows["sentence1"], rows["sentence2"], rows["score"], name="b", truncate_dim=64
    )
    seq = ours.SequentialEvaluator([a, b])
    metrics = seq.evaluate(minilm)
    assert seq.primary_metric == "b/spearman_cosine"
    assert metrics["a/spearman_cosine"] == pytest.approx(
        a.evaluate(minilm)["spearman_cosine"], abs=1e-6
    )
    assert metrics["b/spearman_cosine"] == pytest.approx(
        b.evaluate(minilm)["spearman_cosine"], abs=1e-6
    )
    assert metrics["a/spearman_cosine"] != metrics["b/spearman_cosine"]
