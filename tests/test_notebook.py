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
    # The notebook's run is built like the command line's: atomic checkpoints, SIGTERM handled,
    # and its checkpoint exports though no run config exists.
    from st_lightning.export import encoder_from_checkpoint
    from st_lightning.utils.checkpoint import AtomicCheckpointIO, CheckpointOnSigterm

    run = namespace["run"]
    assert isinstance(run.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert any(isinstance(cb, CheckpointOnSigterm) for cb in run.trainer.callbacks)
    (checkpoint,) = (run.output_dir / "checkpoints").glob("*.ckpt")
    exported = encoder_from_checkpoint(checkpoint).state_dict()
    for key, value in run.module.encoder.state_dict().items():
        assert (exported[key] == value).all(), key
