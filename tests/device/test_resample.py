"""Triangle-filter taps: FFmpeg's bilinear geometry, normalised, and exact at unit scale."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.device.resample import DeviceTaps, resample_axis, triangle_taps


@pytest.mark.parametrize(("n_in", "n_out"), [(1920, 320), (1080, 192), (96, 320), (7, 3), (5, 5), (1, 4)])
def test_triangle_taps_when_any_ratio_weights_sum_to_one_within_the_input(n_in: int, n_out: int) -> None:
    taps = triangle_taps(n_in, n_out)

    assert taps.index.shape == taps.weight.shape and taps.index.shape[0] == n_out
    np.testing.assert_allclose(taps.weight.sum(axis=1), 1.0, rtol=1e-6)
    assert taps.index.min() >= 0 and taps.index.max() < n_in
    assert (taps.weight >= 0).all()


def test_triangle_taps_when_the_size_is_kept_is_the_identity() -> None:
    taps = triangle_taps(6, 6)

    assert taps.is_identity
    assert not triangle_taps(6, 3).is_identity


def test_triangle_taps_when_halving_average_each_pair_with_its_neighbours() -> None:
    taps = triangle_taps(8, 4)  # output 1 sits at input 2.5: inputs 1..4 weigh 1, 3, 3, 1

    row = dict(zip(taps.index[1].tolist(), taps.weight[1].tolist()))
    assert row == pytest.approx({1: 0.125, 2: 0.375, 3: 0.375, 4: 0.125})


def test_resample_axis_when_doubling_interpolates_linearly_and_repeats_the_edges() -> None:
    line = np.array([[[0.0, 8.0, 16.0]]], np.float32)  # (batch, 1 row, 3 columns)

    doubled = resample_axis(line, DeviceTaps(triangle_taps(3, 6), np.asarray), axis=2)

    np.testing.assert_allclose(doubled[0, 0], [0, 2, 6, 10, 14, 16])


def test_resample_axis_when_constant_keeps_the_constant() -> None:
    planes = np.full((2, 9, 11, 3), 77.0, np.float32)

    rows = resample_axis(planes, DeviceTaps(triangle_taps(9, 4), np.asarray), axis=1)
    both = resample_axis(rows, DeviceTaps(triangle_taps(11, 5), np.asarray), axis=2)

    assert both.shape == (2, 4, 5, 3)
    np.testing.assert_allclose(both, 77.0, rtol=1e-6)
