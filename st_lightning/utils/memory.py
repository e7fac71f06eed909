"""Keep a long run's resident memory flat."""

from __future__ import annotations

import os

ONEDNN_CACHE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
# oneDNN (torch's CPU kernel library) caches one compiled kernel per input shape, up to 1024 by
# default. Unpadded and length-grouped batches bring new shapes at almost every step, so the
# cache grows for many epochs (+77 MB over a 60-epoch soak run, +7 MB with this cap:
# benchmarks/results/soak*.md); a small cache still keeps the kernels of fixed shapes.
ONEDNN_CACHE_CAPACITY = 64


def bound_kernel_cache(capacity: int = ONEDNN_CACHE_CAPACITY) -> None:
    """Cap oneDNN's kernel cache unless the environment already sets it. oneDNN reads the
    setting when it builds its first kernel, so this runs before any training."""
    os.environ.setdefault(ONEDNN_CACHE, str(capacity))
