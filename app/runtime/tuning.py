"""Decide a model's runtime and batch size from repeated, interleaved measurements with a margin.

One timing on a shared machine is noise: three starts of the same service chose oneDNN or not,
and batch 4 or 1, from one probe each (issue 12). Here every candidate runs once per round, in an
order that reverses every round, so a slow moment of the machine lands on all of them alike; each
round's costs are taken relative to that round's cheapest, and the median over rounds decides.
The simplest candidate (the model as loaded, the smallest batch) is kept unless another is
cheaper by more than a stated margin.
"""

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Clock = Callable[[], float]
Runtime = Literal["as loaded", "oneDNN"]
TuningSource = Literal["measured", "profile", "settings"]

# A candidate replaces a simpler one only when the simpler one costs more than this much over it.
RUNTIME_MARGIN = 0.10
BATCH_MARGIN = 0.05


@dataclass(frozen=True, kw_only=True, slots=True)
class TrialPlan:
    """How long to measure: `min_rounds`, then more rounds until `budget_s` or `max_rounds`."""

    min_rounds: int = 3
    max_rounds: int = 30
    budget_s: float = 5.0
    clock: Clock = field(default=time.perf_counter, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class Comparison:
    """A measured choice between candidates, listed simplest first."""

    chosen: str
    margin: float
    rounds: int
    ms_per_image: dict[str, float]  # median over rounds
    relative_cost: dict[str, float]  # median over rounds of cost / that round's cheapest


@dataclass(frozen=True, kw_only=True, slots=True)
class Tuning:
    """The configuration a model is served with, why, and the measurements behind it."""

    runtime: Runtime
    runtime_reason: str
    batch_size: int
    source: TuningSource
    runtime_trial: Comparison | None = None
    batch_trial: Comparison | None = None
    profile: str | None = None  # the file that keeps it, when one was written or read


def candidate_sizes(cap: int) -> list[int]:
    """1, 2, 4, ... up to `cap`, and `cap` itself."""
    return sorted({1 << power for power in range(cap.bit_length())} | {cap})


def compare(
    candidates: Mapping[str, Callable[[], object]],
    images: Mapping[str, int],
    margin: float,
    plan: TrialPlan,
) -> Comparison:
    """Time every candidate (`images[name]` images per call) and keep the simplest good one."""
    samples = interleaved_seconds(candidates, plan)
    per_image = {name: [s / images[name] for s in seconds] for name, seconds in samples.items()}
    relative = relative_costs(per_image)
    return Comparison(
        chosen=simplest_within_margin(relative, margin),
        margin=margin,
        rounds=len(next(iter(samples.values()))),
        ms_per_image={name: 1000 * statistics.median(costs) for name, costs in per_image.items()},
        relative_cost=relative,
    )


def interleaved_seconds(
    candidates: Mapping[str, Callable[[], object]], plan: TrialPlan
) -> dict[str, list[float]]:
    """Seconds per call of each candidate: one call per round, the order reversed each round."""
    names = list(candidates)
    samples: dict[str, list[float]] = {name: [] for name in names}
    started = plan.clock()
    rounds = 0
    while rounds < plan.min_rounds or (
        rounds < plan.max_rounds and plan.clock() - started < plan.budget_s
    ):
        for name in names if rounds % 2 == 0 else reversed(names):
            begin = plan.clock()
            candidates[name]()
            samples[name].append(plan.clock() - begin)
        rounds += 1
    return samples


def relative_costs(per_image: Mapping[str, list[float]]) -> dict[str, float]:
    """Each candidate's median, over rounds, of its cost divided by that round's cheapest.

    Pairing within a round cancels what drifts between rounds (another process, frequency).
    """
    ratios: dict[str, list[float]] = {name: [] for name in per_image}
    for costs in zip(*per_image.values(), strict=True):
        cheapest = min(costs)
        for name, cost in zip(per_image, costs, strict=True):
            ratios[name].append(cost / cheapest if cheapest > 0 else 1.0)
    return {name: statistics.median(values) for name, values in ratios.items()}


def simplest_within_margin(relative: Mapping[str, float], margin: float) -> str:
    """The first (simplest) candidate costing at most `margin` more than the cheapest."""
    bound = min(relative.values()) * (1 + margin)
    return next(name for name, cost in relative.items() if cost <= bound)


def describe(comparison: Comparison) -> str:
    """One log-friendly line: each candidate's relative cost and ms per image."""
    costs = ", ".join(
        f"{name}: x{comparison.relative_cost[name]:.2f} ({ms:.2f} ms/image)"
        for name, ms in comparison.ms_per_image.items()
    )
    return f"{costs}; {comparison.rounds} rounds, margin {comparison.margin:.0%}"
