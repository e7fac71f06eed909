"""SentenceEncoder behaviour: encode, offline resolution, atomic saves and bad input."""

from __future__ import annotations

import json
import logging
import shutil
import socket

import numpy as np
import pytest
import torch

from st_lightning.encoders import Pooling, SentenceEncoder, resolve_model_path, st_format

TEXTS = ["short", "a somewhat longer sentence here", "mid length text", "x " * 40]


def test_encode_keeps_input_order_whatever_the_batching(tiny):
    one_by_one = np.stack([tiny.encode(t) for t in TEXTS])
    assert one_by_one.shape == (4, 32)
    np.testing.assert_allclose(tiny.encode(TEXTS, batch_size=3), one_by_one, atol=1e-5)


def test_encode_outputs_tensor_normalized_and_bf16(tiny):
    as_tensor = tiny.encode(TEXTS, convert_to="tensor", normalize_embeddings=True)
    assert isinstance(as_tensor, torch.Tensor) and not as_tensor.requires_grad
    torch.testing.assert_close(as_tensor.norm(dim=1), torch.ones(4))
    full = tiny.encode(TEXTS)
    half = tiny.encode(TEXTS, precision="bfloat16")
    cos = np.sum(full * half, 1) / np.linalg.norm(full, axis=1) / np.linalg.norm(half, axis=1)
    assert half.dtype == np.float32 and cos.min() > 0.99


def test_encode_restores_training_mode(tiny):
    tiny.train()
    tiny.encode(TEXTS)
    assert tiny.training


def test_empty_list_gives_empty_array(tiny):
    out = tiny.encode([])
    assert isinstance(out, np.ndarray) and out.shape == (0, 32)


@pytest.mark.parametrize("bad", [["fine", None], ["fine", 3], [b"bytes"]])
def test_non_string_texts_are_rejected(tiny, bad):
    with pytest.raises(TypeError, match=r"item \d+ is"):
        tiny.encode(bad)


def test_unknown_prompt_name(tiny):
    tiny.prompts = {"query": "query: "}
    with pytest.raises(ValueError, match="Unknown prompt_name 'passage'"):
        tiny.encode(TEXTS, prompt_name="passage")


def test_unknown_pooling_mode():
    with pytest.raises(ValueError, match="Unknown pooling mode"):
        Pooling(32, "average")
    with pytest.raises(ValueError, match="Unknown pooling mode"):
        Pooling.from_config({"embedding_dimension": 32, "pooling_mode": "sum"})


def test_unknown_pooling_mode_in_saved_folder(tiny, tmp_path):
    path = tiny.save_pretrained(tmp_path / "m")
    (path / "1_Pooling/config.json").write_text(
        json.dumps({"embedding_dimension": 32, "pooling_mode": "avg"})
    )
    with pytest.raises(ValueError, match="Unknown pooling mode"):
        SentenceEncoder.from_pretrained(path)


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a model folder"):
        SentenceEncoder.from_pretrained(tmp_path)


def test_missing_tokenizer(tiny, tmp_path):
    path = tiny.save_pretrained(tmp_path / "m")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (path / name).unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        SentenceEncoder.from_pretrained(path)


def test_unsupported_module_type(tiny, tmp_path):
    path = tiny.save_pretrained(tmp_path / "m")
    modules = json.loads((path / "modules.json").read_text())
    modules.append(
        {"idx": 9, "name": "9", "path": "9_LSTM", "type": "sentence_transformers.models.LSTM"}
    )
    (path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match="LSTM"):
        SentenceEncoder.from_pretrained(path)


def test_dense_activation_must_be_a_torch_activation(tiny, tmp_path):
    from st_lightning.encoders import Dense

    with pytest.raises(ValueError, match="Unsupported Dense activation 'os.system'"):
        Dense(4, 4, activation="os.system")


def test_missing_path_is_reported_as_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        SentenceEncoder.from_pretrained(tmp_path / "nope" / "model")


def test_failed_save_leaves_nothing_behind_and_keeps_the_old_model(tiny, tmp_path, monkeypatch):
    target = tmp_path / "m"
    tiny.save_pretrained(target)
    before = sorted(p.name for p in target.iterdir())

    def broken(encoder, out, **settings):
        (out / "config.json").write_text("{half")
        raise OSError("disk full")

    monkeypatch.setattr(st_format, "write_folder", broken)
    with pytest.raises(OSError, match="disk full"):
        tiny.save_pretrained(target)
    with pytest.raises(OSError, match="disk full"):
        tiny.save_pretrained(tmp_path / "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert sorted(p.name for p in target.iterdir()) == before
    SentenceEncoder.from_pretrained(target)  # still loadable


def test_offline_id_resolves_to_packaged_copy_without_network(monkeypatch, caplog, minilm_path):
    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Offline on request: the fallback is reported at INFO (an unreachable Hub warns).
    with caplog.at_level(logging.INFO, logger="st_lightning"):
        path = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    assert path == minilm_path
    assert "packaged copy" in caplog.text and "HF_HUB_OFFLINE=1" in caplog.text
    assert resolve_model_path("all-MiniLM-L6-v2") == minilm_path


def test_unreachable_hub_falls_back_to_packaged_copy(monkeypatch, caplog, minilm_path):
    import huggingface_hub

    def unreachable(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    with caplog.at_level(logging.WARNING, logger="st_lightning"):
        assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == minilm_path
    assert "unreachable" in caplog.text


def test_unknown_id_offline_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE=1 is set"):
        resolve_model_path("someone/not-a-cached-model")


def test_remote_code_is_not_run_unless_asked(tiny, tmp_path):
    tiny.transformer.save_pretrained(tmp_path / "m")
    tiny.tokenizer.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m/config.json").read_text())
    config["model_type"] = "custom-bert"
    config["auto_map"] = {"AutoConfig": "configuration_x.XConfig", "AutoModel": "modeling_x.XModel"}
    (tmp_path / "m/config.json").write_text(json.dumps(config))
    (tmp_path / "m/configuration_x.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(ValueError, match="trust_remote_code"):
        SentenceEncoder.from_pretrained(tmp_path / "m")


def test_dense_weights_from_pytorch_bin_load_safely(tiny, tmp_path):
    from st_lightning.encoders import Dense

    tiny.dense.append(Dense(32, 8))
    path = tiny.save_pretrained(tmp_path / "m")
    weights = path / "2_Dense" / "model.safetensors"
    from safetensors.torch import load_file

    torch.save(load_file(weights), path / "2_Dense" / "pytorch_model.bin")
    weights.unlink()
    loaded = SentenceEncoder.from_pretrained(path)
    np.testing.assert_allclose(loaded.encode(TEXTS), tiny.encode(TEXTS), atol=1e-6)
    shutil.rmtree(path)
