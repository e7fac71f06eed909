"""`python -m st_lightning.train --help` and the docs page of each config group."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

import pytest
from conftest import CONF, REPO, compose_cfg
from test_configs import check_binds

from st_lightning.help import DOCS, config_groups, defaults, description, refresh_docs

GROUPS = config_groups()


def test_every_option_opens_with_a_one_line_description():
    files = [p for p in CONF.rglob("*.yaml") if p.parent.name not in ("hydra", "local")]
    files = [p for p in files if p.parent != CONF]  # train.yaml and mine.yaml are not options
    assert len(files) >= 50
    for path in files:
        text = description(path)
        assert text.endswith((".", ")")), f"{path}: {text!r} is not a whole sentence"
        assert len(text) <= 96, f"{path}: the description does not fit one line"


def test_a_file_without_a_description_is_named(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("# @package _global_\nmodel:\n  lr: 1.0\n")
    with pytest.raises(ValueError, match="x.yaml has no description"):
        description(path)


def test_help_lists_experiments_and_groups_with_their_defaults():
    result = subprocess.run(
        [sys.executable, "-m", "st_lightning.train", "--help"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())  # wrapped lines joined
    experiments = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
    for name in experiments:
        assert f"{name} {description(CONF / 'experiment' / f'{name}.yaml')}" in out
    for group, options in GROUPS.items():
        if group == "experiment":
            continue
        assert f"{group}:" in result.stdout
        for option, text in options.items():
            assert f"{option} {text}" in out
    # The defaults are marked: the ones train.yaml chooses.
    assert defaults()["model/encoder"] == "minilm" and defaults()["logger"] == "csv"
    assert "* minilm" in out and "* csv" in out
    assert not any(f"* {name}" in out for name in experiments)  # no default experiment


def test_every_group_has_a_docs_page_with_current_option_tables(tmp_path):
    copy = tmp_path / "config"
    shutil.copytree(DOCS, copy)
    assert refresh_docs(copy) == []
    for page in copy.glob("*.md"):
        assert page.read_text() == (DOCS / page.name).read_text(), (
            f"docs/config/{page.name} is out of date: python -m st_lightning.help --write-docs"
        )
    assert {g.split("/")[0] for g in GROUPS} == {p.stem for p in DOCS.glob("*.md")}


def docs_commands() -> list[tuple[str, list[str]]]:
    commands = []
    for page in sorted(DOCS.glob("*.md")):
        blocks = page.read_text().split("```bash\n")[1:]
        for block in blocks:
            for line in block.split("```", 1)[0].splitlines():
                if "st_lightning.train" in line:
                    words = shlex.split(line.split("st_lightning.train", 1)[1])
                    commands.append((page.stem, words))
    return commands


@pytest.mark.parametrize("page,overrides", docs_commands())
def test_the_commands_in_the_group_pages_compose_and_bind(page, overrides):
    check_binds(compose_cfg(overrides))
