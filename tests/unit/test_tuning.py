"""The tuning rule: interleaved rounds, costs relative to each round's cheapest, a margin."""

from collections.abc import Callable

import pytest

from app.runtime.tuning import (
    TrialPlan,
    candidate_sizes,
    compare,
    relative_costs,
    simplest_within_margin,
)


class SimulatedClock:
    """A clock that moves only when a simulated forward pass says so: no test is timed."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def runner(self, seconds: Callable[[], float]) -> Callable[[], None]:
        """A candidate whose every call takes `seconds()` on this clock."""

        def run() -> None:
            self.now += seconds()

        return run


def batch_runners(
    clock: SimulatedClock, ms_per_image: dict[int, float]
) -> dict[str, Callable[[], None]]:
    return {str(size): clock.runner(batch_seconds(size, ms)) for size, ms in ms_per_image.items()}


def batch_seconds(size: int, ms_per_image: float) -> Callable[[], float]:
    """A batch of `size` images at `ms_per_image` each."""
    return lambda: size * ms_per_image / 1000


def plan(clock: SimulatedClock, rounds: int = 7) -> TrialPlan:
    return TrialPlan(min_rounds=rounds, max_rounds=rounds, budget_s=0.0, clock=clock)


def test_candidates_are_powers_of_two_and_the_cap() -> None:
    assert candidate_sizes(1) == [1]
    assert candidate_sizes(12) == [1, 2, 4, 8, 12]
    assert candidate_sizes(16) == [1, 2, 4, 8, 16]


def test_a_clearly_faster_batch_size_is_chosen() -> None:
    clock = SimulatedClock()
    ms = {1: 5.8, 2: 5.5, 4: 4.8, 8: 6.0}  # batch 4 is 15% cheaper than 2
    trial = compare(batch_runners(clock, ms), {str(s): s for s in ms}, 0.10, plan(clock))
    assert trial.chosen == "4"
    assert trial.rounds == 7
    assert trial.ms_per_image == pytest.approx({str(s): v for s, v in ms.items()})
    assert trial.relative_cost["4"] == pytest.approx(1.0)
    assert trial.relative_cost["1"] == pytest.approx(5.8 / 4.8)


def test_within_the_margin_the_smaller_batch_is_kept() -> None:
    clock = SimulatedClock()
    ms = {1: 5.8, 2: 5.2, 4: 4.8}  # batch 2 costs 8% more than 4: inside a 10% margin
    trial = compare(batch_runners(clock, ms), {str(s): s for s in ms}, 0.10, plan(clock))
    assert trial.chosen == "2"
    assert (
        compare(batch_runners(clock, ms), {str(s): s for s in ms}, 0.05, plan(clock)).chosen == "4"
    )


def test_a_slow_moment_falls_on_every_candidate_of_its_round() -> None:
    """A stall of the machine (5x slower) across rounds 4-6 does not change the choice."""
    clock = SimulatedClock()
    calls = {"count": 0}

    def slow_sometimes(ms: float) -> Callable[[], float]:
        def seconds() -> float:
            calls["count"] += 1
            stalled = 8 <= calls["count"] < 12  # from the end of round 4 to the start of round 6
            return ms * (5 if stalled else 1) / 1000

        return seconds

    runners = {
        "as loaded": clock.runner(slow_sometimes(12.0)),
        "oneDNN": clock.runner(slow_sometimes(5.0)),
    }
    trial = compare(runners, {"as loaded": 2, "oneDNN": 2}, 0.10, plan(clock))
    assert trial.chosen == "oneDNN"
    assert trial.relative_cost["as loaded"] == pytest.approx(12.0 / 5.0)


def test_the_order_reverses_every_round() -> None:
    clock = SimulatedClock()
    order: list[str] = []
    runners = {name: (lambda name=name: order.append(name)) for name in ("a", "b", "c")}
    compare(runners, dict.fromkeys("abc", 1), 0.1, plan(clock, rounds=3))
    assert order == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]


def test_rounds_run_to_the_budget_within_their_bounds() -> None:
    clock = SimulatedClock()
    runners = {"a": clock.runner(lambda: 0.125), "b": clock.runner(lambda: 0.125)}
    budget = TrialPlan(min_rounds=2, max_rounds=50, budget_s=1.0, clock=clock)
    assert compare(runners, {"a": 1, "b": 1}, 0.1, budget).rounds == 4  # 0.25 s per round
    capped = TrialPlan(min_rounds=2, max_rounds=3, budget_s=1.0, clock=clock)
    assert compare(runners, {"a": 1, "b": 1}, 0.1, capped).rounds == 3


def test_equal_costs_keep_the_simplest() -> None:
    assert simplest_within_margin({"as loaded": 1.0, "oneDNN": 1.0}, 0.1) == "as loaded"
    assert simplest_within_margin({"1": 1.3, "2": 1.05, "4": 1.0}, 0.1) == "2"
    # Every candidate above 1 (none cheapest in most rounds): still measured against the best.
    assert simplest_within_margin({"1": 1.5, "2": 1.2, "4": 1.2}, 0.1) == "2"


def test_relative_costs_pair_candidates_within_each_round() -> None:
    # Round 2 is twice as slow for both: the ratio is unchanged.
    costs = relative_costs({"a": [2.0, 4.0, 2.0], "b": [1.0, 2.0, 1.0]})
    assert costs == {"a": 2.0, "b": 1.0}
