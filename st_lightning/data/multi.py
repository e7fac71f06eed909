"""Multi-dataset samplers: which dataset each step draws from, the same on every rank."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from st_lightning.data.samplers import BatchSampler
from st_lightning.data.streaming import StepSchedule


class MultiDatasetSampler:
    """Yields batches of global row indices (dataset offset + row), one dataset per batch.

    The step schedule depends only on (seed, epoch) and on per-rank batch counts, which are
    equal on every rank, so all ranks draw the same dataset at the same step. The position in
    the epoch is part of `state_dict()`, so a run resumed mid-epoch gets exactly the batches
    it had left.
    """

    def __init__(
        self, samplers: Mapping[str, BatchSampler], offsets: Mapping[str, int], seed: int = 0
    ):
        if not samplers:
            raise ValueError("No datasets to sample from.")
        self.samplers = dict(samplers)
        self.names = list(self.samplers)
        self.offsets = dict(offsets)
        self.seed = seed
        self.epoch = 0
        self.position = 0  # batches already served in this epoch

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.position = 0
        self.epoch = epoch
        for sampler in self.samplers.values():
            sampler.set_epoch(epoch)

    def rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, 7919])

    def schedule(self) -> list[int]:
        """Dataset index per step for the current epoch."""
        raise NotImplementedError

    def steps(self) -> list[tuple[str, list[int]]]:
        """(dataset, rows) per step; each dataset's batches are served in its own order."""
        out = []
        served = dict.fromkeys(self.names, 0)
        for d in self.schedule():
            name = self.names[d]
            out.append((name, self.batch_of(name, served[name])))
            served[name] += 1
        return out

    def batch_of(self, name: str, k: int) -> list[int]:
        return self.samplers[name].batches()[k]

    def __iter__(self) -> Iterator[list[int]]:
        steps = self.steps()
        while self.position < len(steps):
            name, rows = steps[self.position]
            self.position += 1
            yield [self.offsets[name] + r for r in rows]
        self.position = 0

    def __len__(self) -> int:
        """Batches in a whole epoch, also when resumed mid-epoch: Lightning counts on from the
        restored batch index, so the resumed iterator serves the remaining batches while the
        epoch (and the learning-rate schedule computed from it) keeps its length."""
        return len(self.schedule())

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(
                f"Sampler state was saved with seed {state['seed']}, this run uses {self.seed}; "
                "resume with the same seed."
            )
        self.set_epoch(int(state["epoch"]))
        self.position = int(state["position"])

    def counts(self) -> list[int]:
        return [len(self.samplers[n]) for n in self.names]

    @classmethod
    def for_streams(
        cls, names: list[str], sizes: Mapping[str, int | None], seed: int, **settings: Any
    ) -> StepSchedule:
        """The step schedule this mixing gives streamed datasets, which have no batch lists
        (only this class's rule of choosing a dataset per step)."""
        raise ValueError(
            f"{cls.__name__} cannot mix streaming datasets; use data/sampler=proportional, "
            "round_robin or temperature (or WeightedSampler with weights)."
        )


class ProportionalSampler(MultiDatasetSampler):
    """Every batch of every dataset once per epoch, in a shuffled order: larger datasets are
    drawn more often, and every row is used."""

    def schedule(self) -> list[int]:
        steps = np.repeat(np.arange(len(self.names)), self.counts())
        return self.rng().permutation(steps).tolist()

    @classmethod
    def for_streams(
        cls, names: list[str], sizes: Mapping[str, int | None], seed: int, **settings: Any
    ) -> StepSchedule:
        # Each step draws a dataset with probability proportional to its rows.
        return StepSchedule(len(names), stream_probabilities(names, sizes, 1.0), seed)


def stream_probabilities(
    names: list[str], sizes: Mapping[str, int | None], temperature: float
) -> np.ndarray | None:
    """size^(1/T), normalised; every streamed dataset needs a known size."""
    if len(names) == 1:
        return None
    unknown = [n for n in names if not sizes.get(n)]
    if unknown:
        raise ValueError(
            f"Streaming datasets {unknown} have no known number of rows, which mixing by size "
            "needs: give num_rows in their specs, or mix with weights "
            "(data.multi_dataset_sampler.weights={name: weight, ...})."
        )
    raw = np.array([float(sizes[n]) for n in names]) ** (1.0 / temperature)  # type: ignore[arg-type]
    return raw / raw.sum()


class RoundRobinSampler(MultiDatasetSampler):
    """Datasets in turn, until the one with the fewest batches runs out: equal steps per
    dataset, while the rest of the larger datasets is left for later epochs."""

    def schedule(self) -> list[int]:
        return list(range(len(self.names))) * min(self.counts())

    @classmethod
    def for_streams(
        cls, names: list[str], sizes: Mapping[str, int | None], seed: int, **settings: Any
    ) -> StepSchedule:
        # Datasets in turn; a stream that runs out starts its next pass (no epoch to end).
        return StepSchedule(len(names), None, seed)


def check_mixing(
    names: list[str], weights: Mapping[str, float] | None, temperature: float | None
) -> None:
    """Exactly one of weights (one per dataset, >= 0, not all 0) and temperature (> 0)."""
    if (weights is None) == (temperature is None):
        raise ValueError("WeightedSampler needs exactly one of `weights` and `temperature`.")
    if weights is not None:
        unknown = set(weights) ^ set(names)
        if unknown:
            raise ValueError(
                f"weights must name each dataset once: {sorted(unknown)} do not match "
                f"the datasets {names}."
            )
        if any(w < 0 for w in weights.values()) or not sum(weights.values()) > 0:
            raise ValueError(f"weights must be >= 0 and not all 0, got {dict(weights)}.")
    if temperature is not None and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")


class WeightedSampler(MultiDatasetSampler):
    """Each step draws a dataset at random with the given probabilities.

    Args:
        weights: dataset name -> weight (normalised); or
        temperature: probabilities proportional to size^(1 / temperature) (1 = proportional,
            larger = closer to uniform), as in multilingual and multi-task mixing.
        steps_per_epoch: steps per epoch (default: all batches of all datasets).

    A dataset drawn more often than it has batches starts over in a new shuffled order.
    """

    def __init__(
        self,
        samplers: Mapping[str, BatchSampler],
        offsets: Mapping[str, int],
        seed: int = 0,
        weights: Mapping[str, float] | None = None,
        temperature: float | None = None,
        steps_per_epoch: int | None = None,
    ) -> None:
        super().__init__(samplers, offsets, seed)
        check_mixing(self.names, weights, temperature)
        self.weights = dict(weights) if weights is not None else None
        self.temperature = temperature
        self.steps_per_epoch = steps_per_epoch

    def probabilities(self) -> np.ndarray:
        if self.weights is not None:
            raw = np.array([self.weights[n] for n in self.names], dtype=float)
        else:
            sizes = np.array([self.samplers[n].num_rows for n in self.names], dtype=float)
            raw = sizes ** (1.0 / float(self.temperature))  # type: ignore[arg-type]
        return raw / raw.sum()

    @classmethod
    def for_streams(
        cls, names: list[str], sizes: Mapping[str, int | None], seed: int, **settings: Any
    ) -> StepSchedule:
        weights, temperature = settings.get("weights"), settings.get("temperature")
        if settings.get("steps_per_epoch") is not None:
            raise ValueError(
                "WeightedSampler steps_per_epoch has no meaning for streaming data (the stream "
                "has no epochs); remove it and set the run length with trainer.max_steps."
            )
        check_mixing(names, weights, temperature)
        if weights is None:
            probabilities = stream_probabilities(names, sizes, float(temperature))  # type: ignore[arg-type]
            return StepSchedule(len(names), probabilities, seed)
        raw = np.array([float(weights[n]) for n in names])
        return StepSchedule(len(names), raw / raw.sum(), seed)

    def schedule(self) -> list[int]:
        total = self.steps_per_epoch or sum(self.counts())
        return self.rng().choice(len(self.names), size=total, p=self.probabilities()).tolist()

    def batch_of(self, name: str, k: int) -> list[int]:
        # Past its batches, a dataset starts another pass in a new order.
        sampler = self.samplers[name]
        n = len(sampler)
        if k < n:
            return sampler.batches()[k]
        later = sampler.batches(pass_index=k // n)
        return later[k % n % len(later)]
