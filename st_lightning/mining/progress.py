"""Progress bars for the miner's phases, in rows per second."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm


def progress(total: int, desc: str, show: bool) -> Any:
    return tqdm(total=total, desc=desc, unit="rows", unit_scale=True, disable=not show)
