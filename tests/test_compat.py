"""Private attributes of Lightning, torch and transformers live in `st_lightning.compat` only,
and a release without one fails at import with its name."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from conftest import REPO

from st_lightning.compat import IncompatibleVersion, require

PACKAGE = REPO / "st_lightning"
THIRD_PARTY = ("lightning", "torch", "transformers")


def private_uses(path):
    """(line, text) of each `obj._name` on an object other than self/cls, and each
    `from <third party> import _name`."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            if node.attr.startswith("__") and node.attr.endswith("__"):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            found.append((node.lineno, ast.unparse(node)))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(THIRD_PARTY):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("_")]
    return found


def test_no_private_attribute_is_used_outside_the_compat_module():
    offenders = {
        str(path.relative_to(REPO)): uses
        for path in sorted(PACKAGE.rglob("*.py"))
        if "compat" not in path.parts and (uses := private_uses(path))
    }
    assert not offenders, f"move these into st_lightning/compat: {offenders}"


def test_the_scan_finds_a_private_use(tmp_path):
    source = "from lightning.fabric.utilities.cloud_io import _atomic_save\nx = trainer._logger\n"
    path = tmp_path / "private_sample.py"
    path.write_text(source)
    assert [text for _, text in private_uses(path)] == ["_atomic_save", "trainer._logger"]


def test_a_release_without_an_attribute_fails_with_its_name():
    class Connector:
        def __init__(self):
            self.received = False

    require("lightning", "9.9", Connector, ["received"])  # present: nothing happens
    with pytest.raises(IncompatibleVersion) as err:
        require("lightning", "9.9", Connector, ["received", "received_sigterm"])
    message = str(err.value)
    assert "lightning 9.9 has no" in message and "Connector.received_sigterm" in message
    assert "tested with lightning 2.6.6" in message


def test_the_installed_releases_have_every_attribute():
    import st_lightning.compat.lightning  # noqa: F401 - the checks run at import
    import st_lightning.compat.transformers  # noqa: F401


def test_the_encoder_side_imports_without_lightning():
    code = (
        "import sys\n"
        "from st_lightning.encoders import SentenceEncoder, tiny_encoder\n"
        "import st_lightning, st_lightning.losses.base, st_lightning.similarity\n"
        "loaded = [m for m in ('lightning', 'pytorch_lightning', 'hydra') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)
