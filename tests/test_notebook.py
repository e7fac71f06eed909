"""The quickstart notebook runs top to bottom (its code cells, in order, in one namespace)."""

from __future__ import annotations

import json
import os

import pytest
from conftest import REPO


@pytest.mark.slow
def test_quickstart_notebook_runs(monkeypatch, capsys):
    notebook = json.loads((REPO / "notebooks" / "quickstart.ipynb").read_text())
    cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] for c in cells), "commit notebooks with outputs stripped"
    monkeypatch.chdir(REPO / "notebooks")
    namespace: dict = {}
    for cell in cells:
        exec(compile("".join(cell["source"]), "quickstart.ipynb", "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    assert "sts_test" in out and "(2, 384)" in out
    before = namespace["evaluation"].summary()["nli_test"]["before"]["cosine_accuracy"]
    after = namespace["evaluation"].summary()["nli_test"]["after"]["cosine_accuracy"]
    assert 0.5 < before <= 1.0 and 0.5 < after <= 1.0
    assert os.path.exists(namespace["path"])
