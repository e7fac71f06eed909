"""The GPU check: run it once on a machine with a GPU after the README's setup (`make install`).

    .venv/bin/python benchmarks/gpu.py              # about 6 minutes on one GPU
    .venv/bin/python benchmarks/gpu.py --dry-run    # the same code path on the CPU, tiny model

1. The `gpu` tests (`pytest -m gpu tests/`): bf16 step vs fp32 step, the unpadded forward with a
   variable-length attention kernel, DDP over NCCL, FSDP2 with a bf16 policy, sharded
   evaluation, pinned non-blocking copies and host synchronisations per step.
2. The GPU's bf16 matmul peak (8192 x 8192 torch.mm), measured, not taken from a data sheet.
3. st_lightning against SentenceTransformerTrainer on this GPU in bf16, fresh processes, same
   data, loss, schedule and seed (`vs_sentence_transformers.py` does the runs): MNRL on the
   NLI triplets with all-MiniLM-L6-v2 at batch 64 and 256, and with a randomly initialised
   BERT-base-sized encoder (768 hidden, 12 layers) so that the matmuls are large. Useful
   FLOP/s = 6 x non-embedding parameters x real tokens/s, as a share of the measured peak.
4. st_lightning's length-group budget (`model.length_group_tokens`) at batch 256: the
   padded attention groups that the unpadded forward falls back to when it has no
   variable-length kernel (attention dropout without flash-attn), to choose the GPU default.

Writes benchmarks/results/gpu_<gpu>.{json,md} (or --out). With --dry-run everything runs on the
CPU in float32 with a tiny random model and a few steps, to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vs_sentence_transformers as bench  # noqa: E402

ROOT = bench.ROOT
BUDGETS = {"gpu": [4096, 16384, 65536], "dry_run": [256, 1024]}


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"


def run_gpu_tests(dry_run: bool) -> dict[str, Any]:
    """The gpu-marked tests in a subprocess; their summary line and exit code."""
    target = "tests/training/test_gpu.py" if dry_run else "tests"
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", target, "-p", "no:cacheprovider"]
    print("$", " ".join(cmd[1:]), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    summary = lines[-1] if lines else proc.stderr[-500:]
    failures = [line for line in proc.stdout.splitlines() if line.startswith("FAILED")]
    print("  ", summary, flush=True)
    return {
        "returncode": proc.returncode,
        "summary": summary,
        "failed": failures,
        "seconds": round(time.perf_counter() - start, 1),
    }


def random_encoder(folder: Path, dry_run: bool) -> str:
    """A randomly initialised encoder saved where both libraries load it: BERT-base-sized
    (85M non-embedding parameters) on a GPU, tiny in a dry run."""
    from st_lightning.encoders import tiny_encoder

    if not (folder / "modules.json").exists():
        if dry_run:
            encoder = tiny_encoder(max_seq_length=bench.MAX_LENGTH)
        else:
            encoder = tiny_encoder(
                hidden_size=768,
                num_layers=12,
                num_heads=12,
                intermediate_size=3072,
                max_seq_length=bench.MAX_LENGTH,
                seed=0,
            )
        encoder.save_pretrained(folder)
    return str(folder)


def cases(work: Path, dry_run: bool) -> list[tuple[str, bench.Setup]]:
    if dry_run:
        tiny = random_encoder(work / "tiny_random", True)
        return [("tiny_b8", bench.Setup("cpu", "fp32", tiny, 8))]
    bert_base = random_encoder(work / "bert_base_random", False)
    return [
        ("minilm_b64", bench.Setup("cuda", "bf16", None, 64)),
        ("minilm_b256", bench.Setup("cuda", "bf16", None, 256)),
        ("bert_base_random_b128", bench.Setup("cuda", "bf16", bert_base, 128)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model, few steps")
    parser.add_argument("--steps", type=int, help="optimizer steps per timed run")
    parser.add_argument("--rounds", type=int, default=1, help="alternating runs per library")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--out", type=Path, help="results path without suffix")
    parser.add_argument("--work-dir", help="where runs write (reused: an interrupted run resumes)")
    args = parser.parse_args()
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("No CUDA device here; run with --dry-run to check the script on a CPU.")
    began = time.perf_counter()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="st_gpu_"))
    steps = args.steps or (3 if args.dry_run else 40)
    device = "cpu" if args.dry_run else "cuda"
    name = "dry_run_cpu" if args.dry_run else gpu_name()
    results: dict[str, Any] = {"gpu": name, "dry_run": args.dry_run, "torch": torch.__version__}
    results["tests"] = None if args.skip_tests else run_gpu_tests(args.dry_run)
    results["peak_gflops"] = bench.spawn(
        "--worker", "peak", "--device", device, "--work-dir", str(work), cache=work / "peak.json"
    )
    results["cases"] = {}
    for case, setup in cases(work, args.dry_run):
        results["cases"][case] = bench.measure(
            "mnrl_nli", setup, work / case, args.rounds, steps, ["trainer.max_epochs=-1"]
        )
    results["budgets"] = {}
    budget_setup = cases(work, args.dry_run)[-1 if args.dry_run else 1][1]
    for budget in BUDGETS["dry_run" if args.dry_run else "gpu"]:
        entry = bench.measure(
            "mnrl_nli",
            budget_setup,
            work / f"budget_{budget}",
            1,
            steps,
            ["trainer.max_epochs=-1", f"model.length_group_tokens={budget}"],
            impls=("ours",),
        )
        results["budgets"][budget] = entry["throughput_runs"]["ours"][0]["samples_per_s"]
    results["seconds"] = round(time.perf_counter() - began, 1)
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    out = args.out or ROOT / "benchmarks" / "results" / f"gpu_{slug}"
    write(results, out)


def write(results: dict[str, Any], out: Path) -> None:
    precision = "fp32" if results["dry_run"] else "bf16"
    peak = results["peak_gflops"][precision]
    lines = [
        f"# GPU check: {results['gpu']}" + (" (dry run on the CPU)" if results["dry_run"] else ""),
        "",
        f"torch {results['torch']}; measured {precision} matmul peak {peak / 1000:.1f} TFLOP/s; "
        f"whole check {results['seconds']:.0f} s. Command: `python benchmarks/gpu.py"
        + (" --dry-run`." if results["dry_run"] else "`."),
        "",
    ]
    tests = results["tests"]
    if tests is not None:
        lines += [f"gpu tests: {tests['summary']}", *[f"- {f}" for f in tests["failed"]], ""]
    lines += [
        "| case | batch | library | samples/s | real tokens/s | padding | useful TFLOP/s | "
        "share of peak |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case, entry in results["cases"].items():
        rates = {}
        for impl, label in (("reference", "sentence-transformers"), ("ours", "st_lightning")):
            run = entry["throughput_runs"][impl][0]
            params = entry["throughput_runs"]["ours"][0]["non_embedding_params"]
            useful = 6 * params * run["tokens_per_s"] / 1e9
            rates[impl] = run["samples_per_s"]
            lines.append(
                f"| {case} | {entry['batch_size']} | {label} | {run['samples_per_s']:.1f} | "
                f"{run['tokens_per_s']:.0f} | {run['padding_fraction']:.0%} | "
                f"{useful / 1000:.2f} | {useful / peak:.1%} |"
            )
        entry["speedup"] = rates["ours"] / rates["reference"]
    lines.append("")
    for case, entry in results["cases"].items():
        lines.append(f"- {case}: st_lightning / reference samples/s = **{entry['speedup']:.2f}x**")
    lines += ["", "st_lightning samples/s by `model.length_group_tokens`:", ""]
    lines += [f"- {budget}: {rate:.1f}" for budget, rate in results["budgets"].items()]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
