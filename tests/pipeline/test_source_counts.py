"""What the summary says about each source: damaged files fail the run (unless tolerated), jumps in
time and frames over max_fps are counted, and every result keeps a monotonic pts."""

from __future__ import annotations

import streamer
from tests.media import concatenate, cut, write_clip, write_ts_clip
from tests.pipeline.helpers import file_source, pipeline_config


async def run(config, model):
    async with streamer.open(config, model=model) as stream:
        results = [result async for result in stream]
    return results, stream.summary


async def test_summary_when_a_file_was_cut_short_fails_the_run_and_says_how(centerface, tmp_path):
    damaged = cut(write_clip(tmp_path / "cut.mp4", frames=90, faststart=True))

    results, summary = await run(pipeline_config(file_source(damaged, "cut")), centerface)

    report = summary.sources["cut"]
    assert 0 < len(results) < 90 and report.state == "ended" and report.error is None
    assert report.damage is not None and "of the 90 frames it declares" in report.damage
    assert summary.failed == [report] and not summary.succeeded
    assert f"source cut: {len(results)} frames" in summary.render() and report.damage in summary.render()


async def test_summary_when_damage_is_tolerated_still_says_so_and_the_run_succeeds(centerface, tmp_path):
    damaged = cut(write_clip(tmp_path / "cut.mp4", frames=90, faststart=True))

    _, summary = await run(pipeline_config(file_source(damaged, "cut", tolerate_damage=True)), centerface)

    assert summary.succeeded and summary.failed == []
    assert f"ended, {summary.sources['cut'].damage} (tolerated)" in summary.render()


async def test_summary_when_ts_segments_are_concatenated_counts_the_jump_and_keeps_every_frame(centerface, tmp_path):
    segment = write_ts_clip(tmp_path / "segment.ts", frames=20)
    both = concatenate(tmp_path / "both.ts", segment, segment)

    results, summary = await run(pipeline_config(file_source(both, "ts")), centerface)

    pts = [result.frame.pts for result in results]
    assert len(results) == 40 and all(b > a for a, b in zip(pts, pts[1:]))
    assert summary.sources["ts"].discontinuities == 1 and summary.succeeded
    assert "source ts: 40 frames (40 read), 0 dropped, 0 stale, 0 reconnects, 0 decode errors, 1 discontinuities, ended" in (
        summary.render()
    )


async def test_summary_when_max_fps_skips_frames_counts_them_and_nothing_else_is_lost(centerface, clip):
    results, summary = await run(pipeline_config(file_source(clip, "cam", max_fps=10)), centerface)

    report = summary.sources["cam"]
    assert len(results) == report.frames == 10 and report.over_max_fps == 20
    assert ", 20 over max_fps, " in summary.render()
