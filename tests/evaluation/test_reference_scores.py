"""The packaged all-MiniLM-L6-v2 through SentenceEncoder reproduces its published STS-B score."""

from __future__ import annotations

import numpy as np
from conftest import DATA
from datasets import load_dataset
from scipy.stats import spearmanr


def test_minilm_stsb_test_spearman(minilm):
    pairs = load_dataset(str(DATA / "stsb"), split="test")
    assert len(pairs) == 1379
    a = minilm.encode(pairs["sentence1"], batch_size=64, normalize_embeddings=True)
    b = minilm.encode(pairs["sentence2"], batch_size=64, normalize_embeddings=True)
    rho = spearmanr(np.sum(a * b, axis=1), pairs["score"]).statistic
    assert abs(rho - 0.82) <= 0.01, rho  # published: 82.03
