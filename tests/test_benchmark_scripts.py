"""The benchmark scripts run: the GPU check's dry run takes its whole code path on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO
from dist_helpers import run_env


@pytest.mark.slow
def test_gpu_check_dry_run_writes_its_table(tmp_path):
    out = tmp_path / "gpu_dry_run"
    proc = subprocess.run(
        [sys.executable, "benchmarks/gpu.py", "--dry-run", "--out", str(out)],
        cwd=REPO,
        env=run_env(REPO),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["dry_run"] and results["tests"]["returncode"] == 0
    assert "skipped" in results["tests"]["summary"]  # collected, skipped without CUDA
    runs = results["cases"]["tiny_b8"]["throughput_runs"]
    for impl in ("reference", "ours"):
        assert runs[impl][0]["samples_per_s"] > 0 and runs[impl][0]["steps_timed"] == 2
    assert runs["ours"][0]["padding_fraction"] == 0.0  # the unpadded forward
    assert runs["reference"][0]["padding_fraction"] > 0.2
    assert set(results["budgets"]) == {"256", "1024"}
    table = out.with_suffix(".md").read_text()
    assert "| tiny_b8 | 8 | st_lightning |" in table and "share of peak" in table


def test_cpu_benchmark_describes_bf16_from_what_it_measured():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import vs_sentence_transformers as bench

    emulated = {"fp32": 183.0, "bf16": 1.3}
    units = {"fp32": 183.0, "bf16": 748.0}
    assert not bench.bf16_is_fast(emulated) and bench.bf16_is_fast(units)
    assert "no bf16 units" in bench.describe_cpu(emulated)
    text = bench.describe_cpu(units)
    assert "4.1x as fast as float32" in text and "no bf16 units" not in text


@pytest.mark.slow
def test_decoder_memory_benchmark_runs_a_variant():
    proc = subprocess.run(
        [sys.executable, "benchmarks/decoder_memory.py", "--single", "LoRA r16 + checkpointing",
         "--batch-size", "4", "--steps", "1"],
        cwd=REPO, env=run_env(REPO), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    # r * (in + out) for q and o (768 -> 768), k and v (768 -> 256), in 14 layers.
    lora = 16 * 14 * (2 * (768 + 768) + 2 * (768 + 256))
    assert row["parameters"] > 100e6 and row["trainable_parameters"] == lora == 1_146_880
    assert row["samples_per_second"] > 0 and row["peak_memory_above_model_mb"] > 0


@pytest.mark.slow
def test_streaming_benchmark_runs_its_scale_and_reader_parts(tmp_path):
    out = tmp_path / "streaming"
    for part in ("scale", "reader"):
        proc = subprocess.run(
            [sys.executable, "benchmarks/streaming.py", "--only", part, "--rows", "6000",
             "--shards", "3", "--batch-size", "64", "--work", str(tmp_path), "--out", str(out)],
            cwd=REPO, env=run_env(REPO), capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["scale"]["rows_streamed"] == 6000 // 64 * 64
    assert results["scale"]["rss_mb"] and results["reader"]["rows_per_s"] > 0
    assert "rows/s" in out.with_suffix(".md").read_text()
