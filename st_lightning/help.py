"""`python -m st_lightning.train --help`: the experiments and config groups, read from `conf/`.

Every option file in `conf/` opens with a one-line description (the first comment line after
an `# @package` line); the help lists them, so it never drifts from the configs.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml

CONF = Path(__file__).resolve().parents[1] / "conf"
# Groups that hold Hydra's own settings or machine-local overrides, not run choices.
_NOT_LISTED = {"hydra", "local"}


def description(path: Path) -> str:
    """The option's one-line description: its first comment line after `# @package`."""
    for line in path.read_text().splitlines():
        if line.startswith("# @package"):
            continue
        if line.startswith("#"):
            return line.lstrip("#").strip()
        break
    raise ValueError(
        f"{path} has no description: start it with a comment line saying what the option does "
        "(after the `# @package` line, if any)."
    )


def config_groups(conf: Path = CONF) -> dict[str, dict[str, str]]:
    """Group path (e.g. `model/encoder`) -> option name -> description."""
    groups: dict[str, dict[str, str]] = {}
    for folder in sorted(p for p in conf.rglob("*") if p.is_dir()):
        group = folder.relative_to(conf).as_posix()
        if group.split("/")[0] in _NOT_LISTED:
            continue
        options = {f.stem: description(f) for f in sorted(folder.glob("*.yaml"))}
        if options:
            groups[group] = options
    return groups


def defaults(conf: Path = CONF) -> dict[str, str]:
    """The option each group starts with (train.yaml's defaults list, and nested ones)."""
    chosen: dict[str, str] = {}

    def read(path: Path, prefix: str) -> None:
        for entry in yaml.safe_load(path.read_text()).get("defaults", []):
            if not isinstance(entry, dict):
                continue
            for key, value in entry.items():
                group = key.removeprefix("optional ").strip()
                if group in _NOT_LISTED or not isinstance(value, str) or value == "???":
                    continue
                full = f"{prefix}{group}"
                chosen[full] = value
                nested = conf / full / f"{value}.yaml"
                if nested.is_file():
                    read(nested, f"{full}/")

    read(conf / "train.yaml", "")
    return chosen


def help_text(conf: Path = CONF) -> str:
    groups = config_groups(conf)
    chosen = defaults(conf)
    width = max(len(o) for options in groups.values() for o in options) + 2

    def listing(options: dict[str, str], default: str | None = None) -> list[str]:
        lines = []
        for name, text in options.items():
            mark = "*" if name == default else " "
            wrapped = textwrap.wrap(text, 98 - width - 5) or [""]
            lines.append(f"  {mark} {name:<{width}}{wrapped[0]}")
            lines += [f"    {'':<{width}}{more}" for more in wrapped[1:]]
        return lines

    out = [
        "usage: python -m st_lightning.train +experiment=NAME [GROUP=OPTION ...] [KEY=VALUE ...]",
        "       python -m st_lightning.train +experiment=NAME +hparams_search=NAME  (a sweep)",
        "",
        "Train a sentence-embedding model; the folder it exports loads with",
        "sentence_transformers.SentenceTransformer(path). Examples:",
        "  python -m st_lightning.train +experiment=smoke",
        "  python -m st_lightning.train +experiment=nli_triplet model.lr=3e-5 logger=wandb",
        "  python -m st_lightning.train +experiment=nli_triplet --cfg job   (print the config)",
        "",
        "Experiments (+experiment=NAME):",
        *listing(groups.pop("experiment", {})),
        "",
        "Config groups (GROUP=OPTION; * marks the default; docs/config/GROUP.md has each one):",
    ]
    for group, options in groups.items():
        out += ["", f"{group}:", *listing(options, chosen.get(group))]
    out += [
        "",
        "Any value can be set with KEY=VALUE (e.g. trainer.max_steps=100, data.batch_size=32);",
        "--cfg job prints the composed config, --hydra-help shows Hydra's own options.",
    ]
    return "\n".join(out)


def wants_help(argv: list[str]) -> bool:
    return any(a in ("--help", "-h") for a in argv)


# docs/config/GROUP.md holds a generated table of each group's options between these markers
# (subgroups such as data/sampler on their parent's page); the prose around them is written by
# hand. `python -m st_lightning.help --write-docs` refreshes the tables; a test checks them.
DOCS = CONF.parent / "docs" / "config"


def _markers(group: str) -> tuple[str, str]:
    return f"<!-- options of {group}: generated -->", f"<!-- end of {group} -->"


def options_table(group: str, options: dict[str, str], default: str | None) -> str:
    rows = ["| option | what it does |", "|---|---|"]
    for name, text in options.items():
        shown = f"`{name}` (default)" if name == default else f"`{name}`"
        escaped = text.replace("|", "\\|")
        rows.append(f"| {shown} | {escaped} |")
    begin, end = _markers(group)
    return "\n".join([begin, *rows, end])


def docs_pages(conf: Path = CONF) -> dict[str, dict[str, str]]:
    """Page name (top-level group) -> group -> its generated options table."""
    chosen = defaults(conf)
    pages: dict[str, dict[str, str]] = {}
    for group, options in config_groups(conf).items():
        page = group.split("/")[0]
        pages.setdefault(page, {})[group] = options_table(group, options, chosen.get(group))
    return pages


def refresh_docs(docs: Path = DOCS, conf: Path = CONF) -> list[str]:
    """Rewrite the generated tables in place; returns what is missing (a page or a marker)."""
    missing = []
    for page, tables in docs_pages(conf).items():
        path = docs / f"{page}.md"
        if not path.is_file():
            missing.append(f"{path}: no page for config group {page!r}")
            continue
        text = path.read_text()
        for group, table in tables.items():
            begin, end = _markers(group)
            if begin not in text or end not in text:
                missing.append(f"{path}: no {begin!r} ... {end!r} block")
                continue
            head, rest = text.split(begin, 1)
            text = head + table + rest.split(end, 1)[1]
        path.write_text(text)
    return missing


if __name__ == "__main__":
    import sys

    if "--write-docs" in sys.argv:
        problems = refresh_docs()
        print("\n".join(problems) or f"Refreshed the option tables in {DOCS}")
        sys.exit(1 if problems else 0)
    print(help_text())
