"""The README's Python API block, run as a user would (two steps instead of an epoch)."""

from __future__ import annotations

import pytest
from conftest import REPO


def readme_python_block() -> str:
    text = (REPO / "README.md").read_text()
    part = text[text.index("## Python API") :]
    start = part.index("```python") + len("```python")
    return part[start : part.index("```", start)]


@pytest.mark.slow
def test_readme_python_api_trains_and_exports(tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer

    code = readme_python_block()
    for old, new in [('"runs/minilm"', repr(str(tmp_path))), ("max_epochs=1", "max_steps=2")]:
        assert old in code, f"the README block no longer has {old}"
        code = code.replace(old, new)
    monkeypatch.chdir(REPO)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    run = namespace["run"]
    assert run.trainer.global_step == 2
    assert "stsb_test" in run.evaluation.summary()
    model = SentenceTransformer(str(tmp_path / "final"), device="cpu")
    assert model.encode(["a sentence"]).shape == (1, 384)
