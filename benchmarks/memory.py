"""Resident memory of this process, and a thread that records its peak (for the benchmarks)."""

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
