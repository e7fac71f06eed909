"""SentenceEncoder against sentence-transformers: same embeddings, and folders both can load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from st_lightning.encoders import POOLING_MODES, SentenceEncoder, tiny_encoder

# Mixed lengths, so padding (and so the mask handling of every pooling mode) matters.
TEXTS = [
    "A man is playing a guitar.",
    "Hi",
    "The quick brown fox jumps over the lazy dog while the cat watches from the windowsill.",
    "Two women are embracing while holding to go packages.",
    "ok ok ok",
    "A very long sentence " + "with many repeated words " * 12,
]


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def st_encode(model: SentenceTransformer, texts, **kwargs) -> np.ndarray:
    return model.encode(texts, batch_size=4, convert_to_numpy=True, **kwargs)


def test_packaged_minilm_matches_sentence_transformers(minilm, st_minilm, stsb_sentences):
    ours = minilm.encode(stsb_sentences, batch_size=16)
    ref = st_encode(st_minilm, stsb_sentences)
    assert ours.shape == ref.shape == (128, 384)
    assert row_cosines(ours, ref).min() >= 0.99999
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert minilm.normalize and minilm.max_seq_length == st_minilm.max_seq_length == 256


def test_saved_minilm_loads_unchanged_in_sentence_transformers(minilm, stsb_sentences, tmp_path):
    path = minilm.save_pretrained(tmp_path / "minilm")
    reloaded = SentenceTransformer(str(path), device="cpu")
    cos = row_cosines(minilm.encode(stsb_sentences), st_encode(reloaded, stsb_sentences))
    assert len(cos) >= 100 and cos.min() >= 0.99999
    assert reloaded.max_seq_length == 256
    assert (path / "model.safetensors").exists() and not (path / "pytorch_model.bin").exists()
    modules = json.loads((path / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == [
        "Transformer",
        "Pooling",
        "Normalize",
    ]


@pytest.mark.parametrize("mode", POOLING_MODES)
@pytest.mark.parametrize("dense_dim,normalize", [(None, False), (16, True)])
def test_pooling_dense_normalize_round_trip(mode, dense_dim, normalize, tmp_path):
    encoder = tiny_encoder(pooling_mode=mode, dense_dim=dense_dim, normalize=normalize, seed=3)
    expected = encoder.encode(TEXTS, batch_size=4)
    path = encoder.save_pretrained(tmp_path / "model")

    ours = SentenceEncoder.from_pretrained(path)
    assert ours.pooling.modes == [mode] and ours.normalize == normalize
    np.testing.assert_allclose(ours.encode(TEXTS, batch_size=4), expected, atol=1e-6)

    ref = SentenceTransformer(str(path), device="cpu")
    got = st_encode(ref, TEXTS)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=2e-5)


@pytest.mark.parametrize("modes", [["cls", "max", "mean"], ["mean", "cls"]])
def test_several_pooling_modes_concatenate_in_order(modes, tmp_path):
    """The canonical order is written in the v2-v5 layout; any other order with v6 keys."""
    encoder = tiny_encoder(pooling_mode=modes, seed=1)
    expected = encoder.encode(TEXTS)
    assert expected.shape == (len(TEXTS), 32 * len(modes))
    path = encoder.save_pretrained(tmp_path / "m")
    legacy = "pooling_mode" not in json.loads((path / "1_Pooling/config.json").read_text())
    assert legacy == (modes == ["cls", "max", "mean"])
    assert SentenceEncoder.from_pretrained(path).pooling.modes == modes
    ref = SentenceTransformer(str(path), device="cpu")
    np.testing.assert_allclose(st_encode(ref, TEXTS), expected, atol=2e-5)


def test_reads_folder_written_by_sentence_transformers_6(minilm_path, tmp_path):
    """v6 key names: pooling_mode / embedding_dimension, max length in the tokenizer config."""
    from sentence_transformers.base.modules.dense import Dense as STDense
    from sentence_transformers.base.modules.normalize import Normalize as STNormalize

    base = SentenceTransformer(str(minilm_path), device="cpu")
    torch.manual_seed(0)
    dense = STDense(384, 32, activation_function=torch.nn.Tanh())
    model = SentenceTransformer(
        modules=[base[0], base[1], dense, STNormalize()],
        prompts={"query": "query: ", "document": ""},
        similarity_fn_name="dot",
        device="cpu",
    )
    model.max_seq_length = 48
    model.save_pretrained(str(tmp_path / "v6"))
    pooling_config = json.loads((tmp_path / "v6/1_Pooling/config.json").read_text())
    assert "pooling_mode" in pooling_config  # really the v6 layout

    ours = SentenceEncoder.from_pretrained(tmp_path / "v6")
    assert ours.max_seq_length == 48 and ours.similarity_fn_name == "dot"
    assert ours.prompts["query"] == "query: " and ours.normalize and len(ours.dense) == 1
    for prompt_name in (None, "query"):
        got = ours.encode(TEXTS, prompt_name=prompt_name)
        ref = st_encode(model, TEXTS, prompt_name=prompt_name)
        assert row_cosines(got, ref).min() >= 0.99999


def test_prompts_and_include_prompt_match_sentence_transformers(tmp_path):
    encoder = tiny_encoder(seed=5)
    encoder.prompts = {"query": "query: ", "passage": "passage: "}
    encoder.pooling.include_prompt = False
    path = encoder.save_pretrained(tmp_path / "m")
    ref = SentenceTransformer(str(path), device="cpu")
    assert ref.prompts["query"] == "query: "
    for name in ("query", "passage"):
        np.testing.assert_allclose(
            encoder.encode(TEXTS, prompt_name=name),
            st_encode(ref, TEXTS, prompt_name=name),
            atol=2e-5,
        )
    with_prompt = encoder.encode(TEXTS, prompt_name="query")
    assert not np.allclose(with_prompt, encoder.encode(TEXTS))


def test_max_seq_length_truncates_and_round_trips(tmp_path):
    encoder = tiny_encoder(max_seq_length=64, seed=2)
    encoder.max_seq_length = 8
    assert encoder.tokenize(TEXTS)["input_ids"].shape[1] == 8
    path = encoder.save_pretrained(tmp_path / "m")
    assert SentenceEncoder.from_pretrained(path).max_seq_length == 8
    ref = SentenceTransformer(str(path), device="cpu")
    assert ref.max_seq_length == 8
    np.testing.assert_allclose(st_encode(ref, TEXTS), encoder.encode(TEXTS), atol=2e-5)


def test_plain_transformer_folder_gets_mean_pooling(tiny, tmp_path):
    tiny.transformer.save_pretrained(tmp_path / "plain")
    tiny.tokenizer.save_pretrained(tmp_path / "plain")
    loaded = SentenceEncoder.from_pretrained(tmp_path / "plain", max_seq_length=64)
    assert loaded.pooling.modes == ["mean"] and not loaded.normalize
    np.testing.assert_allclose(loaded.encode(TEXTS), tiny.encode(TEXTS), atol=1e-6)
    cls_loaded = SentenceEncoder.from_pretrained(tmp_path / "plain", pooling_mode="cls")
    assert cls_loaded.pooling.modes == ["cls"]


def test_overwrite_replaces_whole_folder(tiny, tmp_path):
    target = tmp_path / "m"
    tiny.save_pretrained(target)
    (target / "stale.txt").write_text("from an older save")
    tiny.save_pretrained(target)
    assert not (target / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folders left
