"""BatchCosts: the learnt cost per batch size, and the live batch size and wait it picks for a budget."""

from __future__ import annotations

import pytest

from streamer.batch_costs import AUTO_FLOOR_S, MIN_SAMPLES, REFRESH_EVERY, BatchCosts, CostKey

KEY = CostKey("onnxruntime-cpu", 320, 192)


def learnt(costs_s: dict[int, float], max_batch_size: int = 4) -> BatchCosts:
    """A cost model that has seen MIN_SAMPLES batches of each size at these seconds."""
    costs = BatchCosts(max_batch_size)
    for size, seconds in costs_s.items():
        for _ in range(MIN_SAMPLES):
            costs.observe(KEY, size, seconds)
    return costs


# --- learning ----------------------------------------------------------------------------------------


def test_observe_when_a_size_is_new_takes_its_first_time_as_is():
    costs = BatchCosts(4)
    costs.observe(KEY, 2, 0.080)

    assert costs.cost(KEY, 2) == pytest.approx(0.080)
    assert costs.cost(KEY, 1) is None


def test_observe_when_a_size_runs_a_second_time_replaces_its_warm_up():
    costs = BatchCosts(4)
    costs.observe(KEY, 1, 0.500)  # the backend's first call at this shape
    costs.observe(KEY, 1, 0.040)

    assert costs.cost(KEY, 1) == pytest.approx(0.040)


def test_observe_when_a_size_repeats_moves_the_average_by_alpha():
    costs = BatchCosts(4, alpha=0.25)
    for seconds in (0.500, 0.040, 0.080):
        costs.observe(KEY, 1, seconds)

    assert costs.cost(KEY, 1) == pytest.approx(0.040 + 0.25 * 0.040)


def test_observe_keeps_each_key_apart():
    costs = BatchCosts(4)
    costs.observe(KEY, 1, 0.040)
    costs.observe(CostKey("onnxruntime-cpu", 320, 320), 1, 0.070)

    assert costs.cost(KEY, 1) == pytest.approx(0.040)
    assert costs.snapshot()[CostKey("onnxruntime-cpu", 320, 320)] == {1: (pytest.approx(0.070), 1)}


# --- the choice --------------------------------------------------------------------------------------


def test_choose_when_nothing_is_known_runs_one_frame_without_waiting():
    choice = BatchCosts(4).choose(KEY, age_s=0.0, budget_s=0.1, max_wait_s=0.01, available=4)

    assert (choice.size, choice.wait_s, choice.expected_s) == (1, 0.0, None)


def test_choose_when_batching_costs_linear_time_keeps_batches_of_one():
    costs = learnt({1: 0.040, 2: 0.080, 3: 0.120, 4: 0.160})

    choice = costs.choose(KEY, age_s=0.0, budget_s=1.0, max_wait_s=0.01, available=4)

    assert (choice.size, choice.wait_s) == (1, 0.0)
    assert choice.expected_s == pytest.approx(0.040)


def test_choose_when_batches_are_nearly_free_takes_the_largest_within_the_budget():
    costs = learnt({1: 0.010, 2: 0.0105, 3: 0.011, 4: 0.0115})

    choice = costs.choose(KEY, age_s=0.005, budget_s=0.1, max_wait_s=0.05, available=4)

    assert choice.size == 4
    assert choice.expected_s == pytest.approx(0.0165)
    assert choice.wait_s == pytest.approx(0.05)  # the budget leaves 82 ms: max_wait caps it


def test_choose_when_a_larger_batch_would_miss_the_budget_stops_below_it():
    costs = learnt({1: 0.010, 2: 0.012, 3: 0.060, 4: 0.090})

    choice = costs.choose(KEY, age_s=0.020, budget_s=0.070, max_wait_s=0.5, available=4)

    assert choice.size == 2  # 20 ms old + 60 ms for 3 frames would be 80 ms, over 70
    assert choice.expected_s == pytest.approx(0.032)


def test_choose_when_the_frame_is_already_too_old_for_any_batch_runs_one():
    costs = learnt({1: 0.040, 2: 0.045})

    choice = costs.choose(KEY, age_s=0.2, budget_s=0.1, max_wait_s=0.01, available=2)

    assert (choice.size, choice.wait_s) == (1, 0.0)


def test_choose_waits_only_what_the_budget_leaves():
    costs = learnt({1: 0.010, 2: 0.011})

    choice = costs.choose(KEY, age_s=0.030, budget_s=0.050, max_wait_s=1.0, available=2)

    assert choice.size == 2
    assert choice.wait_s == pytest.approx(0.050 - 0.030 - 0.011)


# --- exploring ---------------------------------------------------------------------------------------


def test_choose_when_the_next_size_is_untried_and_could_fit_tries_it():
    costs = learnt({1: 0.040})

    choice = costs.choose(KEY, age_s=0.0, budget_s=0.1, max_wait_s=0.01, available=3)

    assert (choice.size, choice.exploring) == (2, True)


def test_choose_when_a_larger_size_has_run_too_few_times_tries_it_again_before_judging_it():
    costs = learnt({1: 0.040})
    for seconds in [0.300] + [0.080] * (MIN_SAMPLES - 2):  # a warm-up, and not enough after it
        costs.observe(KEY, 2, seconds)

    choice = costs.choose(KEY, age_s=0.0, budget_s=0.5, max_wait_s=0.01, available=2)

    assert (choice.size, choice.exploring) == (2, True)


def test_choose_when_a_batch_of_one_has_run_too_few_times_runs_it_again_before_exploring():
    costs = BatchCosts(4)
    for seconds in [0.300] + [0.040] * (MIN_SAMPLES - 2):
        costs.observe(KEY, 1, seconds)

    assert costs.choose(KEY, age_s=0.0, budget_s=0.5, max_wait_s=0.01, available=4).size == 1


def test_choose_does_not_explore_past_the_frames_at_hand_or_max_batch_size():
    assert learnt({1: 0.040}).choose(KEY, 0.0, 0.1, 0.01, available=1).size == 1
    assert learnt({1: 0.040}, max_batch_size=1).choose(KEY, 0.0, 0.1, 0.01, available=4).size == 1


def test_choose_when_even_the_smaller_batch_would_miss_the_budget_does_not_explore():
    costs = learnt({1: 0.040})

    assert costs.choose(KEY, age_s=0.070, budget_s=0.1, max_wait_s=0.01, available=3).size == 1


def test_choose_retries_a_tried_neighbour_that_fits_every_refresh_period_up_then_down():
    costs = learnt({1: 0.040, 2: 0.080})  # batches of one win
    for _ in range(REFRESH_EVERY - 2 * MIN_SAMPLES):  # observed already
        costs.observe(KEY, 1, 0.040)

    due = costs.choose(KEY, age_s=0.0, budget_s=0.1, max_wait_s=0.01, available=2)
    costs.observe(KEY, 1, 0.040)
    after = costs.choose(KEY, age_s=0.0, budget_s=0.1, max_wait_s=0.01, available=2)

    assert (due.size, due.exploring) == (2, True)
    assert (after.size, after.exploring) == (1, False)


def test_choose_when_a_larger_size_won_retries_the_smaller_one_in_its_turn():
    costs = learnt({1: 0.040, 2: 0.041}, max_batch_size=2)  # batches of two win
    for _ in range(2 * REFRESH_EVERY - 2 * MIN_SAMPLES):
        costs.observe(KEY, 2, 0.041)

    due = costs.choose(KEY, age_s=0.0, budget_s=0.1, max_wait_s=0.01, available=2)

    assert (due.size, due.exploring) == (1, True)


# --- the automatic budget ----------------------------------------------------------------------------


def test_auto_budget_is_one_and_a_half_batches_of_one_and_never_under_the_floor():
    assert BatchCosts(4).auto_budget(KEY) is None
    assert learnt({1: 0.040}).auto_budget(KEY) == pytest.approx(0.060)
    assert learnt({1: 0.001}).auto_budget(KEY) == pytest.approx(AUTO_FLOOR_S)
