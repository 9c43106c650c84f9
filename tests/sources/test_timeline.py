"""Timeline: one monotonic timeline per source across sessions and jumps back; max_fps counted."""

from __future__ import annotations

import pytest

from streamer.sources import SourceStats
from streamer.sources.timeline import Timeline

STEP = 0.1


def timeline(max_fps: float | None = None) -> Timeline:
    line = Timeline("source 'cam'", SourceStats(), max_fps, None)
    line.new_session(STEP)
    return line


def test_timeline_when_stream_time_goes_back_starts_a_segment_one_step_after_the_last_pts() -> None:
    line = timeline()

    stamped = [line.stamp(t) for t in (5.0, 5.1, 5.2, 0.0, 0.1, 0.2)]

    assert stamped == pytest.approx([5.0, 5.1, 5.2, 5.3, 5.4, 5.5])
    assert line.stats.discontinuities == 1


def test_timeline_when_stream_time_goes_back_twice_logs_each_jump_once(caplog: pytest.LogCaptureFixture) -> None:
    line = timeline()

    with caplog.at_level("WARNING", logger="streamer.sources.timeline"):
        for t in (1.0, 1.1, 0.0, 0.1, 0.2, 0.3, 0.0, 0.1):
            line.stamp(t)

    assert line.stats.discontinuities == 2
    assert [record.getMessage() for record in caplog.records] == [
        "source 'cam': its timestamps jumped back from 1.100 s to 0.000 s; its frames go on at 1.200 s",
        "source 'cam': its timestamps jumped back from 0.300 s to 0.000 s; its frames go on at 1.600 s",
    ]


def test_timeline_when_the_first_frame_has_no_timestamp_goes_on_without_counting_a_jump(
    caplog: pytest.LogCaptureFixture,
) -> None:
    line = timeline()  # FFmpeg's RTSP reader gives a stream's first keyframe no time

    with caplog.at_level("WARNING", logger="streamer.sources.timeline"):
        first = line.stamp(None)  # guessed by the time since connecting: some ms
        rest = [line.stamp(t) for t in (0.0, 0.1, 0.2)]  # earlier than the guess

    assert rest == pytest.approx([first + STEP, first + 2 * STEP, first + 3 * STEP])
    assert line.stats.discontinuities == 0 and not caplog.records


def test_timeline_when_a_frame_in_the_stream_has_no_timestamp_puts_it_one_step_on() -> None:
    line = timeline()

    stamped = [line.stamp(t) for t in (40.0, 40.1, None, 40.3)]

    assert stamped == pytest.approx([40.0, 40.1, 40.2, 40.3])
    assert line.stats.discontinuities == 0


def test_timeline_when_a_reconnect_restarts_the_clock_goes_on_without_counting_a_jump() -> None:
    line = timeline()
    first = [line.stamp(t) for t in (0.0, 0.1)]

    line.new_session(STEP)
    second = [line.stamp(t) for t in (40.0, 40.1)]  # a new connection: its own clock

    assert first + second == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert line.stats.discontinuities == 0


def test_timeline_when_max_fps_skips_frames_counts_each_one() -> None:
    line = timeline(max_fps=5)  # at most one frame in 0.2 s

    kept = [line.keep(line.stamp(t)) for t in (0.0, 0.1, 0.2, 0.3, 0.4, 0.0, 0.1, 0.2)]

    assert kept == [True, False, True, False, True, False, True, False]
    assert line.stats.over_max_fps == 4 and line.stats.discontinuities == 1
