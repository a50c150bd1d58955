"""Batch-size tuning picks the measured best, preferring smaller sizes on a tie."""

import pytest

from app.runtime.tuning import best_batch_size, candidate_sizes, measure_batch_rates


def test_candidates_are_powers_of_two_and_the_cap() -> None:
    assert candidate_sizes(1) == [1]
    assert candidate_sizes(12) == [1, 2, 4, 8, 12]
    assert candidate_sizes(16) == [1, 2, 4, 8, 16]


def test_measures_a_runner_that_likes_batch_four() -> None:
    seconds_per_image = {1: 0.004, 2: 0.003, 4: 0.001, 8: 0.004, 16: 0.004}
    now = 0.0  # a simulated clock: the test cannot be upset by a busy machine

    def clock() -> float:
        return now

    def run(size: int) -> None:
        nonlocal now
        now += seconds_per_image[size] * size

    rates = measure_batch_rates(run, [1, 2, 4, 8, 16], budget_s=0.05, clock=clock)
    assert rates[4] == pytest.approx(1000.0)
    assert best_batch_size(rates) == 4
    assert 16 not in rates  # stopped once sizes got clearly worse


def test_ties_go_to_the_smaller_batch() -> None:
    assert best_batch_size({1: 100.0, 2: 101.0, 4: 80.0}) == 1
    assert best_batch_size({1: 50.0, 2: 100.0, 4: 101.0}) == 2
