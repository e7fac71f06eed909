"""Lightning's FSDPStrategy on CPU processes (gloo), for tests on machines without GPUs.

Lightning refuses `strategy="fsdp"` without a CUDA accelerator; the check applies to the strategy
name and to the exact FSDPStrategy class, so this subclass, passed as an object, runs the same
FSDP machinery (torch's FullyShardedDataParallel, sharded parameters, full-state-dict
checkpoints) on CPU.
"""

from __future__ import annotations

from lightning.pytorch.strategies import FSDPStrategy


class CPUFSDPStrategy(FSDPStrategy):
    pass
