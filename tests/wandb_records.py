"""Read what an offline W&B run wrote: the records of its `run-<id>.wandb` file.

The file is W&B's transaction log: a 7-byte header (":W&B", magic, version), then LevelDB-style
blocks of 32 KiB holding records, each with a 7-byte header (CRC32, little-endian length, type:
1 whole, 2 first, 3 middle, 4 last part), whose payloads are `wandb_internal_pb2.Record`
protobufs. Reading the file itself tests what a `wandb sync` would upload, without mocking.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = 7


def payloads(path: Path) -> list[bytes]:
    buf = path.read_bytes()
    assert buf[:4] == b":W&B", f"{path} is not a W&B transaction log"
    out, parts, offset = [], b"", HEADER
    while offset + HEADER <= len(buf):
        space = BLOCK - offset % BLOCK
        if space < HEADER:  # the block's tail is padding
            offset += space
            continue
        _crc, length, kind = struct.unpack("<IHB", buf[offset : offset + HEADER])
        if kind == 0 and length == 0:  # zero padding to the block's end
            offset += space
            continue
        data = buf[offset + HEADER : offset + HEADER + length]
        offset += HEADER + length
        if kind == 1:
            out.append(data)
        elif kind == 2:
            parts = data
        elif kind == 3:
            parts += data
        elif kind == 4:
            out.append(parts + data)
            parts = b""
    return out


@dataclass
class OfflineRun:
    name: str = ""
    group: str = ""
    project: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def read_offline_run(run_dir: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("run-*.wandb")
    run = OfflineRun()
    for data in payloads(path):
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.name, run.group = record.run.display_name, record.run.run_group
            run.project = record.run.project
            for item in record.run.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                run.summary[_key(item)] = json.loads(item.value_json)
        elif kind == "artifact":
            a = record.artifact
            run.artifacts.append(
                {
                    "name": a.name,
                    "type": a.type,
                    "aliases": list(a.aliases),
                    "files": sorted(m.path for m in a.manifest.contents),
                    "metadata": json.loads(a.metadata or "{}"),
                }
            )
    return run


def offline_runs(save_dir: Path) -> list[OfflineRun]:
    return [read_offline_run(d) for d in sorted((save_dir / "wandb").glob("offline-run-*"))]
