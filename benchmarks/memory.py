"""Shared by the benchmarks: resident memory of this process, a thread that records its peak,
and a description of the machine for result files."""

from __future__ import annotations

import os
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    """Resident memory in bytes, now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakSampler(threading.Thread):
    """Samples `rss()` every `interval` seconds until `running` is set to False."""

    def __init__(self, interval: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.peak = rss()
        self.interval = interval
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss())
            time.sleep(self.interval)


def machine() -> str:
    """The machine a result was measured on: cores, CPU model, bf16 units, OS."""
    import platform

    from st_lightning.utils.precision import cpu_has_fast_bf16
    from st_lightning.utils.record import cpu_name

    units = "with bf16 units" if cpu_has_fast_bf16() else "without bf16 units"
    return f"{os.cpu_count()} x {cpu_name()} ({units}), {platform.system()}"
