"""SequentialEvaluator: several evaluators as one, with one primary metric."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from st_lightning.evaluation.base import Evaluator, TextGroup


class SequentialEvaluator(Evaluator):
    """Runs each evaluator; metrics are `<evaluator name>/<metric>`. The primary metric is the
    last evaluator's, or the mean of all primaries with `main_score="mean"`."""

    def __init__(
        self, evaluators: Sequence[Evaluator], name: str = "sequential", main_score: str = "last"
    ) -> None:
        super().__init__(name)
        if not evaluators:
            raise ValueError("SequentialEvaluator needs at least one evaluator.")
        names = [e.name for e in evaluators]
        if len(set(names)) != len(names):
            raise ValueError(f"SequentialEvaluator needs distinct evaluator names, got {names}.")
        if main_score not in ("last", "mean"):
            raise ValueError(f"main_score must be 'last' or 'mean', got {main_score!r}.")
        self.evaluators = list(evaluators)
        self.main_score = main_score

    @property
    def primary_metric(self) -> str:
        last = self.evaluators[-1]
        return "mean_primary" if self.main_score == "mean" else f"{last.name}/{last.primary_metric}"

    def inputs(self) -> dict[str, TextGroup]:
        return {f"{e.name}/{k}": g for e in self.evaluators for k, g in e.inputs().items()}

    def compute(self, embeddings: Mapping[str, Tensor]) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for e in self.evaluators:
            prefix = f"{e.name}/"
            own = {
                k[len(prefix) :]: v[:, : e.truncate_dim] if e.truncate_dim else v
                for k, v in embeddings.items()
                if k.startswith(prefix)
            }
            sub = e.compute(own)
            metrics.update({prefix + k: v for k, v in sub.items()})
        if self.main_score == "mean":
            primaries = [metrics[f"{e.name}/{e.primary_metric}"] for e in self.evaluators]
            metrics["mean_primary"] = sum(primaries) / len(primaries)
        return metrics
