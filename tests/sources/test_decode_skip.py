"""Decode skipping (streamer/sources/decode_skip.py): what max_fps drops need not be decoded, and no
frame that comes out is ever smeared. Each clip is encoded here with PyAV, then decoded fully and
with max_fps; every frame the skipping source gives out must equal, pixel for pixel, the full
decode's frame at the same timestamp."""

from __future__ import annotations

import threading
from pathlib import Path

import av
import numpy as np
import pytest

from streamer.config.schema import FileSourceConfig
from streamer.frames import Frame
from streamer.sources import AvSource
from tests.service.helpers import get_json, scrape, served, until, value

FPS, MAX_FPS, SECONDS = 30, 5, 5
SIZE = (320, 240)


def write_clip(path: Path, codec: str, options: dict[str, str], idr_at: set[int] | None = None) -> Path:
    """SECONDS of a moving, noisy pattern (so frames differ and P-frames carry real changes)."""
    rng = np.random.default_rng(1)
    width, height = SIZE
    base = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.options = options
        for index in range(FPS * SECONDS):
            image = np.roll(base, index * 3, axis=1) + rng.integers(0, 4, base.shape, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if idr_at is not None and index in idr_at:
                frame.pict_type = av.video.frame.PictureType.I
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def x264(gop: int, bframes: int, **extra: str) -> dict[str, str]:
    return {"preset": "veryfast", "g": str(gop), "keyint_min": str(gop), "bf": str(bframes), "sc_threshold": "0", **extra}


def decoded(path: Path, max_fps: float | None) -> tuple[dict[float, np.ndarray], AvSource]:
    source = AvSource(FileSourceConfig(id="cam", path=str(path), max_fps=max_fps))
    frames = {}
    for item in source.frames(threading.Event()):
        if isinstance(item, Frame):
            frames[round(item.pts, 6)] = item.decoded.to_ndarray(format="rgb24")
    return frames, source


def decimated(times: list[float], max_fps: float) -> list[float]:
    """The timestamps max_fps keeps out of `times`, by the timeline's rule."""
    kept: list[float] = []
    for time in times:
        if not kept or time - kept[-1] >= 1 / max_fps - 1e-6:
            kept.append(time)
    return kept


def assert_unsmeared(path: Path, *, all_kept: bool = True) -> AvSource:
    full, _ = decoded(path, None)
    skipping, source = decoded(path, MAX_FPS)
    for time, image in skipping.items():
        assert np.array_equal(image, full[time]), f"the frame at {time} s differs from the full decode's"
    expected = decimated(sorted(full), MAX_FPS)
    if all_kept:
        assert sorted(skipping) == expected
    stats = source.stats
    assert stats.frames + stats.over_max_fps == len(full)  # every frame of the file is accounted for
    assert stats.skipped_before_decode <= stats.over_max_fps and stats.damage is None
    return source


X265_IP_ONLY = {"preset": "ultrafast", "x265-params": f"keyint={FPS}:min-keyint={FPS}:bframes=0:scenecut=0:open-gop=0:log-level=error"}


# mp4: length-prefixed NAL units; ts: Annex B start codes (as RTSP gives them)
@pytest.mark.parametrize(("container", "codec", "options"), [
    ("mp4", "libx264", x264(gop=FPS, bframes=0)), ("ts", "libx264", x264(gop=FPS, bframes=0)), ("mp4", "libx265", X265_IP_ONLY),
])
def test_decode_skip_when_ip_only_gop_skips_each_gop_tail_and_keeps_every_frame_exact(
    tmp_path: Path, container: str, codec: str, options: dict[str, str]
) -> None:
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    source = assert_unsmeared(write_clip(tmp_path / f"ip.{container}", codec, options))

    # 1 s GOPs at 30 fps, max_fps 5: after the frame at +0.8 s of each GOP nothing is kept until the next
    # IDR, 5 frames; the first two GOPs are decoded whole while the GOP length is learnt.
    assert source.stats.skipped_before_decode == 5 * (SECONDS - 2)


def test_decode_skip_when_b_frames_skips_the_non_reference_ones_only_where_dropped(tmp_path: Path) -> None:
    source = assert_unsmeared(write_clip(tmp_path / "b.mp4", "libx264", x264(gop=FPS, bframes=3, b_pyramid="none")))

    assert source.stats.skipped_before_decode > FPS * SECONDS // 3  # most B-frames are dropped ones


def test_decode_skip_when_intra_only_decodes_the_kept_frames_alone(tmp_path: Path) -> None:
    source = assert_unsmeared(write_clip(tmp_path / "mjpeg.avi", "mjpeg", {}))

    assert source.stats.skipped_before_decode == source.stats.over_max_fps
    assert source.stats.frames == SECONDS * MAX_FPS


def test_decode_skip_when_the_gop_grows_longer_loses_frames_but_never_smears(tmp_path: Path) -> None:
    # IDRs every 30 frames, then a 75-frame GOP: the GOP tail skipped at 3.8 s lasts until 4.5 s.
    idr_at = {0, 30, 60, 90, 120 + 45}
    path = write_clip(tmp_path / "long.mp4", "libx264", x264(gop=300, bframes=0, forced_idr="1"), idr_at)
    source = assert_unsmeared(path, all_kept=False)

    assert source.stats.skipped_before_decode > 5 * 2


def test_decode_skip_when_kept_frames_fall_off_the_idr_beat_moves_them_onto_it(tmp_path: Path) -> None:
    # 1 s GOPs starting at frame 28: max_fps keeps frames 0, 6, 12, ..., 4 frames off each IDR.
    idr_at = {0, 28, 58, 88, 118, 148}
    path = write_clip(tmp_path / "beat.mp4", "libx264", x264(gop=300, bframes=0, forced_idr="1"), idr_at)
    source = assert_unsmeared(path, all_kept=False)
    frames, _ = decoded(path, MAX_FPS)

    kept = sorted(frames)
    assert all(later - earlier >= 1 / MAX_FPS - 1e-6 for earlier, later in zip(kept, kept[1:]))
    assert round(118 / FPS, 6) in frames and round(148 / FPS, 6) in frames  # on the beat once GOPs are steady
    assert source.stats.skipped_before_decode == 4 + 5  # frames 114-117 to reach the IDR, then 143-147
    assert len(frames) == SECONDS * MAX_FPS  # the one longer gap (frame 108 to 118) costs no frame here


def test_decode_skip_when_no_max_fps_decodes_everything(tmp_path: Path) -> None:
    frames, source = decoded(write_clip(tmp_path / "all.mp4", "libx264", x264(gop=FPS, bframes=0)), None)

    assert len(frames) == FPS * SECONDS and source.stats.skipped_before_decode == 0


@pytest.mark.parametrize("loop_passes", [2])
def test_decode_skip_when_a_file_loops_keeps_skipping_in_each_pass(tmp_path: Path, loop_passes: int) -> None:
    path = write_clip(tmp_path / "loop.mp4", "libx264", x264(gop=FPS, bframes=0))
    config = FileSourceConfig(id="cam", path=str(path), max_fps=MAX_FPS, loop=True, max_frames=SECONDS * MAX_FPS * loop_passes)
    source = AvSource(config)
    frames = [item for item in source.frames(threading.Event()) if isinstance(item, Frame)]

    full, _ = decoded(path, None)
    for frame in frames:  # pass n's timestamps go on n clip lengths later
        image = frame.decoded.to_ndarray(format="rgb24")
        assert np.array_equal(image, full[round(frame.pts - frame.session * SECONDS, 6)])
    assert len(frames) == SECONDS * MAX_FPS * loop_passes
    assert all(b.pts - a.pts >= 1 / MAX_FPS - 1e-6 for a, b in zip(frames, frames[1:]))
    # The second pass starts where max_fps keeps frames off the IDRs' beat: they are moved onto it.
    assert source.stats.skipped_before_decode >= 5 * (SECONDS - 2) + 5 * (SECONDS - 3)


async def test_decode_skip_when_a_pipeline_runs_shows_the_count_in_its_summary_status_and_metrics(centerface, tmp_path: Path) -> None:
    path = write_clip(tmp_path / "cam.mp4", "libx264", x264(gop=FPS, bframes=0))
    source = {"type": "file", "id": "cam", "path": str(path), "max_fps": MAX_FPS}
    async with served(centerface, source) as (stream, _, http):
        await until(lambda: _ended(stream))
        samples = await scrape(http)
        _, status = await get_json(http, "/status")
    report = stream.summary.sources["cam"]

    assert report.skipped_before_decode == 5 * (SECONDS - 2) and report.frames == SECONDS * MAX_FPS
    assert value(samples, "streamer_source_frames_skipped_before_decode_total", source="cam") == report.skipped_before_decode
    assert status["sources"][0]["skipped_before_decode"] == report.skipped_before_decode
    assert f"over max_fps ({report.skipped_before_decode} skipped before decode)" in stream.summary.render()


async def _ended(stream) -> bool:
    return stream.summary.sources["cam"].state == "ended"
