"""The exported model card against the card sentence-transformers writes for the equivalent run
(the same tiny model, training data, evaluation data, loss, evaluator, language and licence)."""

from __future__ import annotations

import contextlib
import io
import re

import numpy as np
import pytest
import yaml
from conftest import REPO, run_cfg

from st_lightning.card import CardData, model_card
from st_lightning.encoders import tiny_encoder
from st_lightning.train import train

NLI = str(REPO / "tests/assets/tiny_nli.jsonl")
STS = str(REPO / "tests/assets/tiny_sts.jsonl")


def split(card: str) -> tuple[dict, str]:
    assert card.startswith("---\n")
    head, body = card[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


@pytest.fixture(scope="module")
def reference_card(tmp_path_factory):
    """sentence-transformers' own card for a 48-row MNRL run with an eval dataset and an STS
    evaluator, trained by its trainer."""
    from datasets import load_dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerModelCardData,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )
    from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator

    root = tmp_path_factory.mktemp("reference_card")
    tiny_encoder(seed=5).save_pretrained(root / "base")
    card_data = SentenceTransformerModelCardData(language="en", license="apache-2.0")
    model = SentenceTransformer(str(root / "base"), device="cpu", model_card_data=card_data)
    train_set = load_dataset("json", data_files=NLI, split="train")
    sts = load_dataset("json", data_files=STS, split="train")
    evaluator = EmbeddingSimilarityEvaluator(
        sts["sentence1"], sts["sentence2"], sts["score"], name="sts_tiny"
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(root / "out"), num_train_epochs=1, per_device_train_batch_size=8,
        logging_steps=2, eval_strategy="steps", eval_steps=3, report_to=[],
    )  # fmt: skip
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=train_set, eval_dataset=train_set.select(range(8)),
        loss=losses.MultipleNegativesRankingLoss(model), evaluator=evaluator,
    )  # fmt: skip
    trainer.train()
    model.save_pretrained(str(root / "final"))
    return (root / "final" / "README.md").read_text()


@pytest.fixture(scope="module")
def our_card(tmp_path_factory):
    out = tmp_path_factory.mktemp("our_card")
    cfg = run_cfg(
        out,
        [
            "+experiment=smoke",
            f"+data.eval_datasets.nli={{path: {NLI}, split: 'train[:8]'}}",
            "export.license=apache-2.0",
            "trainer.max_steps=6",
            "evaluation.every_n_steps=3",
        ],
    )
    train(cfg)
    return out, (out / "final" / "README.md").read_text()


def test_the_yaml_header_has_the_reference_keys(reference_card, our_card):
    ref, _ = split(reference_card)
    ours, _ = split(our_card[1])
    assert set(ref) <= set(ours), f"missing {set(ref) - set(ours)}"
    assert ours["language"] == ref["language"] == ["en"]
    assert ours["license"] == ref["license"] == "apache-2.0"
    assert ours["pipeline_tag"] == ref["pipeline_tag"]
    assert ours["library_name"] == ref["library_name"]
    assert ours["metrics"] == ref["metrics"]
    for tag in ("dataset_size:48", "loss:MultipleNegativesRankingLoss", "sentence-transformers"):
        assert tag in ours["tags"] and tag in ref["tags"]
    # Widget entries: the same shape, texts from the training data.
    assert {tuple(sorted(w)) for w in ours["widget"]} == {tuple(sorted(w)) for w in ref["widget"]}
    texts = open(NLI).read()
    assert all(w["source_sentence"] in texts for w in ours["widget"])


def test_the_model_index_has_the_reference_structure(reference_card, our_card):
    (ref,) = split(reference_card)[0]["model-index"]
    (ours,) = split(our_card[1])[0]["model-index"]
    (ref_result,) = ref["results"]
    (our_result,) = ours["results"]
    assert our_result["task"] == ref_result["task"]  # semantic-similarity, with its name
    assert our_result["dataset"]["type"] == ref_result["dataset"]["type"] == "sts_tiny"
    assert set(our_result["dataset"]) == set(ref_result["dataset"])
    assert [set(m) for m in our_result["metrics"]] == [set(m) for m in ref_result["metrics"]]
    assert [(m["type"], m["name"]) for m in our_result["metrics"]] == [
        (m["type"], m["name"]) for m in ref_result["metrics"]
    ]


# The reference card's sections and the heading each has in ours.
SECTIONS = {
    "## Model Details": "## Model details",
    "### Full Model Architecture": "### Full model architecture",
    "## Usage": "## Usage",
    "## Evaluation": "## Evaluation",
    "## Training Details": "## Training details",
    "### Training Dataset": "### Training datasets",
    "### Evaluation Dataset": "### Evaluation datasets",
    "### Training Hyperparameters": "### Training hyperparameters",
    "### Training Logs": "### Training logs",
    "### Training Time": "### Training time",
    "### Framework Versions": "### Framework versions",
    "## Citation": "## Citation",
}


def test_the_card_has_every_section_of_the_reference(reference_card, our_card):
    out, card = our_card
    for theirs, mine in SECTIONS.items():
        assert re.search(f"^{re.escape(theirs)}$", reference_card, re.MULTILINE), theirs
        assert re.search(f"^{re.escape(mine)}$", card, re.MULTILINE), mine
    assert "### Hardware" in card and "- **CPU**:" in card
    assert re.search(r"- \*\*Training\*\*: [\d.]+ seconds", card)
    assert "- Sentence Transformers: " in card and "- PyTorch: " in card
    # Both datasets, with sizes, token statistics and samples.
    assert "* Size: 48 training samples" in card and "* Size: 8 evaluation samples" in card
    assert card.count("| column | min tokens | mean tokens | max tokens |") == 2
    # The training log: the loss at every step and the evaluations at steps 3 and 6.
    log = card.split("### Training logs", 1)[1].split("###", 1)[0]
    assert "| epoch | step | training loss | validation loss | sts_tiny/spearman_cosine |" in log
    rows = [r for r in log.splitlines() if re.match(r"\| [\d.]+ \| \d+ \|", r)]
    assert [int(r.split("|")[2]) for r in rows] == [1, 2, 3, 4, 5, 6]
    evaluated = [r for r in rows if not r.rstrip(" |").endswith("-")]
    assert [int(r.split("|")[2]) for r in evaluated] == [3, 6]


def test_the_usage_snippet_loads_the_exported_folder_and_prints_its_numbers(our_card):
    out, card = our_card
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    assert f'SentenceTransformer("{(out / "final").as_posix()}")' in code
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "card-usage", "exec"), {})  # the snippet as a user runs it
    shape, similarities = printed.getvalue().split("\n", 1)
    assert shape.strip() == "(3, 32)"
    comment = [line.lstrip("# ") for line in code.splitlines() if re.match(r"#\s+\[", line)]
    stated = np.array(yaml.safe_load("".join(comment[1:]).replace(" ", "")))
    got = np.array(re.findall(r"-?\d+\.\d+", similarities), dtype=float).reshape(3, 3)
    np.testing.assert_allclose(got, stated, atol=1e-4)


def test_language_licence_and_emissions_in_the_header(tiny):
    card = model_card(
        tiny,
        CardData(
            model_name="m", load_path="me/m", language=["en", "de"], license="mit",
            emissions={"emissions": 1.5, "energy_consumed": 0.002, "source": "codecarbon",
                       "training_type": "fine-tuning", "on_cloud": False, "hours_used": 0.01,
                       "hardware_used": "cpu"},
        ),
    )  # fmt: skip
    head, body = split(card)
    assert head["language"] == ["en", "de"] and head["license"] == "mit"
    assert head["co2_eq_emissions"]["emissions"] == 1.5
    assert "- **Carbon emitted**: 0.001500 kg of CO2" in body
    assert 'SentenceTransformer("me/m")' in body and "or its Hub repository" in body
