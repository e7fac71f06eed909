"""Backbones beyond BERT, each a tiny random model built offline: saved by st_lightning, loaded
by sentence-transformers and by st_lightning with identical embeddings; trained one step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoTokenizer

from st_lightning.encoders import Pooling, SentenceEncoder, resolve_model_path
from st_lightning.encoders.families import DECODERS, build_backbone, hidden_size_of, random_config

# model_type -> pooling: decoders pool their last token; ModernBERT its first (cls), the rest
# the mean. Each model is `random_config(model_type)`'s size: hidden 32, 2 layers, 2 heads.
FAMILIES = {
    "roberta": "mean",
    "xlm-roberta": "mean",
    "distilbert": "mean",
    "mpnet": "mean",
    "modernbert": "cls",
    "t5": "mean",
    **{model_type: "lasttoken" for model_type in DECODERS},
}
TEXTS = ["A man is eating food.", "Two dogs run in the park near the old bridge.", "hi"]


def family_encoder(model_type: str, tmp_path) -> SentenceEncoder:
    """A random backbone of `model_type` with the tokenizer its folder loads as (the packaged
    WordPiece vocabulary, read through the family's own tokenizer class)."""
    base = AutoTokenizer.from_pretrained(
        resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    )
    config = random_config(model_type, vocab_size=base.vocab_size)
    folder = tmp_path / f"{model_type}-tokenizer"
    base.save_pretrained(folder)
    config.save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    backbone = build_backbone(config)
    hidden = hidden_size_of(config)
    pooling = FAMILIES[model_type]
    return SentenceEncoder(backbone, tokenizer, Pooling(int(hidden), pooling), max_seq_length=64)


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_family_saves_and_loads_in_the_reference_with_identical_embeddings(model_type, tmp_path):
    from sentence_transformers import SentenceTransformer

    encoder = family_encoder(model_type, tmp_path).eval()
    ours = encoder.encode(TEXTS)
    folder = encoder.save_pretrained(tmp_path / "model")
    reference = SentenceTransformer(str(folder), device="cpu")
    np.testing.assert_allclose(reference.encode(TEXTS), ours, atol=1e-5)
    back = SentenceEncoder.from_pretrained(folder).eval()
    assert type(back.transformer) is type(encoder.transformer)
    assert back.pooling.modes == encoder.pooling.modes
    np.testing.assert_allclose(back.encode(TEXTS), ours, atol=1e-5)


@pytest.mark.parametrize("model_type", ["t5", "qwen3", "modernbert"])
def test_family_trains_a_step(model_type, tmp_path):
    encoder = family_encoder(model_type, tmp_path).train()
    features = encoder.tokenize(TEXTS)
    loss = encoder(features).pow(2).sum()
    loss.backward()
    grads = [p.grad for p in encoder.parameters() if p.requires_grad]
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads) > len(grads) // 2


def test_t5_loads_its_encoder_only(tmp_path):
    encoder = family_encoder("t5", tmp_path)
    assert type(encoder.transformer).__name__ == "T5EncoderModel"
    folder = encoder.save_pretrained(tmp_path / "t5")
    assert type(SentenceEncoder.from_pretrained(folder).transformer).__name__ == "T5EncoderModel"


def test_a_decoder_only_t5_checkpoint_is_refused_clearly(tmp_path):
    config = AutoConfig.for_model("t5", vocab_size=100, d_model=8, d_ff=16, num_layers=1,
                                  num_heads=1, d_kv=8, is_decoder=True)  # fmt: skip
    with pytest.raises(ValueError, match="no encoder stack"):
        build_backbone(config)


def test_a_t5_folder_without_encoder_weights_is_refused_clearly(tmp_path):
    from safetensors.torch import load_file, save_file

    encoder = family_encoder("t5", tmp_path)
    folder = encoder.save_pretrained(tmp_path / "t5")
    weights = load_file(str(folder / "model.safetensors"))
    save_file(
        {k: v for k, v in weights.items() if "encoder" not in k}, str(folder / "model.safetensors")
    )  # noqa: E501
    with pytest.raises(ValueError, match="no weights for the t5 encoder"):
        SentenceEncoder.from_pretrained(folder)


def word_tokenizer(**special):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "</s>": 2, "a": 3, "b": 4}
    vocab.update({f"w{i}": 5 + i for i in range(1200)})  # a vocabulary of a real size
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", **special
    )


def test_lasttoken_pooling_needs_texts_that_end_with_an_eos_token(tiny, caplog):
    with pytest.raises(ValueError, match="has no EOS token and ends texts with an ordinary token"):
        SentenceEncoder(tiny.transformer, word_tokenizer(), Pooling(32, "lasttoken"))
    # An EOS token the tokenizer does not append: allowed, with a warning saying so.
    with caplog.at_level("WARNING", logger="st_lightning"):
        SentenceEncoder(
            tiny.transformer, word_tokenizer(eos_token="</s>"), Pooling(32, "lasttoken")
        )
    assert "does not append its EOS token" in caplog.text
    # [SEP] closing every text (BERT tokenizers) counts as the end token; mean pooling never asks.
    SentenceEncoder(tiny.transformer, tiny.tokenizer, Pooling(32, "lasttoken"))
    SentenceEncoder(tiny.transformer, word_tokenizer(), Pooling(32, "mean"))


def test_a_tokenizer_without_padding_token_pads_with_eos(tiny):
    tokenizer = word_tokenizer(eos_token="</s>")
    tokenizer.pad_token = None
    encoder = SentenceEncoder(tiny.transformer, tokenizer, Pooling(32, "mean"))
    assert encoder.tokenizer.pad_token == "</s>"
    assert encoder.tokenize(["a b a", "a"])["input_ids"].shape == (2, 3)


ANCHORS = ["a man eats", "two dogs run in the park near the old stone bridge today", "hi"]
POSITIVES = ["someone is eating", "dogs are outside", "hello there my friend, how are you"]


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_the_length_grouped_forward_equals_the_padded_forward(model_type, tmp_path):
    """Training embeds the rows of all columns sorted by length, in groups padded only to their
    own longest row; each family gives the embeddings and gradients of one padded forward per
    column (dropout off, so both see the same function)."""
    from st_lightning.encoders.batch import BatchEmbedder

    encoder = family_encoder(model_type, tmp_path).eval()  # eval: no dropout draws
    columns = [encoder.tokenize(ANCHORS), encoder.tokenize(POSITIVES)]

    def run(embed):
        encoder.zero_grad()
        embeddings = embed(columns)
        (embeddings[0] @ embeddings[1].T).sum().backward()
        grads = {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None}
        return [e.detach() for e in embeddings], grads

    padded, padded_grads = run(lambda cols: [encoder(c) for c in cols])
    grouped, grouped_grads = run(BatchEmbedder(encoder, group_tokens=24))
    for a, b in zip(padded, grouped, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    assert padded_grads.keys() == grouped_grads.keys() and padded_grads
    for name, grad in padded_grads.items():
        error = (grouped_grads[name] - grad).norm()
        assert error <= 1e-4 * grad.norm() + 1e-6, (name, error.item())


def test_append_eos_ends_every_text_with_eos_and_is_saved_with_the_tokenizer(tiny, tmp_path):
    from sentence_transformers import SentenceTransformer

    tokenizer = word_tokenizer(eos_token="</s>")
    encoder = SentenceEncoder(
        tiny.transformer, tokenizer, Pooling(32, "lasttoken"), append_eos=True
    )
    features = encoder.tokenize(["a b a", "b"])
    assert features["input_ids"].tolist() == [[3, 4, 3, 2], [4, 2, 0, 0]]  # </s> is id 2
    encoder.eval()
    folder = encoder.save_pretrained(tmp_path / "eos")
    texts = ["a b a", "b", "a a"]
    np.testing.assert_allclose(
        SentenceTransformer(str(folder), device="cpu").encode(texts),
        encoder.encode(texts),
        atol=1e-5,
    )
    assert SentenceEncoder.from_pretrained(folder).tokenize(["b"])["input_ids"].tolist() == [[4, 2]]
    with pytest.raises(ValueError, match="append_eos needs an EOS token"):
        SentenceEncoder(tiny.transformer, word_tokenizer(), Pooling(32, "mean"), append_eos=True)
