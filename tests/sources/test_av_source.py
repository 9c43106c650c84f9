"""AvSource over generated clips and lavfi patterns, built from its config; the queue defaults."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import numpy as np
import pytest

from streamer.config.schema import (
    FileSourceConfig, HlsSourceConfig, LavfiSourceConfig, RtspSourceConfig, WebcamSourceConfig,
)  # fmt: skip
from streamer.errors import ConfigError, SourceDecodeError, SourceError, SourceOpenError, SourceRefusedError
from streamer.frames import Frame
from streamer.sources import AvSource, SourceState, StateChange, build_source
from streamer.sources.av_source import decode_threads
from streamer.sources.base import only_frames
from tests.engine.gpu import has_cuda, requires_gpu
from tests.media import concatenate, cut, pattern, write_clip, write_ts_clip

HANG_LIMIT_S = 20.0  # far beyond any run of these tiny clips: reaching it means the source hung
LAVFI = "testsrc2=size=64x48:rate=30"


def collect(source: AvSource, stop: threading.Event | None = None) -> list[Frame]:
    """Every frame the source yields, read in a worker thread so that a hang fails instead of blocking."""
    stop = stop or threading.Event()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(lambda: list(only_frames(source.frames(stop))))
        try:
            return future.result(timeout=HANG_LIMIT_S)
        except FutureTimeout:
            stop.set()
            pytest.fail(f"{source.describe()} did not finish within {HANG_LIMIT_S} s")


def outcome(source: AvSource) -> list[Frame] | Exception:
    try:
        return collect(source)
    except Exception as exc:  # the test inspects what came out
        return exc


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 frames, 30 fps."""
    return write_clip(tmp_path_factory.mktemp("media") / "short.mp4", frames=10)


# --- files ----------------------------------------------------------------------------------------


def test_av_source_yields_every_frame_of_a_clip_in_order(clip: Path) -> None:
    frames = collect(AvSource(FileSourceConfig(id="cam", path=str(clip))))

    assert [f.index for f in frames] == list(range(30))
    assert {f.source_id for f in frames} == {"cam"}


def test_av_source_frame_pts_is_index_over_fps(clip: Path) -> None:
    before = time.time()
    frames = collect(AvSource(FileSourceConfig(id="cam", path=str(clip))))

    assert [f.pts for f in frames] == pytest.approx([i / 30 for i in range(30)], abs=1e-3)
    assert all(before <= f.wall_time <= time.time() for f in frames)


def test_av_source_frames_carry_size_and_rgb_pixels(clip: Path) -> None:
    frames = collect(AvSource(FileSourceConfig(id="cam", path=str(clip), max_frames=2)))

    for frame in frames:
        assert (frame.width, frame.height) == (160, 96)
        assert frame.decoded is not None
        assert frame.image.shape == (96, 160, 3) and frame.image.dtype == np.uint8


def test_av_source_pixels_match_the_encoded_pattern(clip: Path) -> None:
    frames = collect(AvSource(FileSourceConfig(id="cam", path=str(clip), max_frames=1)))

    # H.264 at ultrafast is lossy: compare on average, per channel (catches BGR/RGB swaps).
    error = np.abs(frames[0].image.astype(int) - pattern(0, 160, 96).astype(int)).mean(axis=(0, 1))
    assert (error < 8).all(), error


def test_av_source_stops_at_max_frames(clip: Path) -> None:
    frames = collect(AvSource(FileSourceConfig(id="cam", path=str(clip), max_frames=7)))

    assert [f.index for f in frames] == list(range(7))


def test_av_source_when_max_frames_exceeds_clip_yields_the_whole_clip(clip: Path) -> None:
    assert len(collect(AvSource(FileSourceConfig(id="cam", path=str(clip), max_frames=1000)))) == 30


def test_decode_threads_when_auto_is_one_for_latest_sources_and_ffmpegs_own_for_block() -> None:
    assert decode_threads(RtspSourceConfig(id="cam", url="rtsp://camera/stream")) == 1
    assert decode_threads(FileSourceConfig(id="cam", path="a.mp4", policy="latest")) == 1
    assert decode_threads(FileSourceConfig(id="cam", path="a.mp4")) is None  # FFmpeg: one per core
    assert decode_threads(RtspSourceConfig(id="cam", url="rtsp://camera/stream", decode_threads=3)) == 3


def test_av_source_when_decoding_on_one_thread_yields_the_frames_ffmpegs_threads_do(clip: Path) -> None:
    threaded = collect(AvSource(FileSourceConfig(id="cam", path=str(clip))))
    single = collect(AvSource(FileSourceConfig(id="cam", path=str(clip), decode_threads=1)))

    assert [f.pts for f in single] == [f.pts for f in threaded]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(single, threaded))


def test_av_source_loop_keeps_pts_increasing_across_the_boundary(clip: Path) -> None:
    frames = collect(AvSource(FileSourceConfig(id="cam", path=str(clip), loop=True, max_frames=75)))

    pts = [f.pts for f in frames]
    assert [f.index for f in frames] == list(range(75))
    assert all(b > a for a, b in zip(pts, pts[1:]))
    assert pts[30] == pytest.approx(30 / 30, abs=1e-3)  # the second pass continues one frame step on
    assert pts[74] == pytest.approx(74 / 30, abs=1e-3)


@pytest.mark.parametrize("after", [0, 9, 17, 28])
def test_av_source_when_resumed_after_a_frame_continues_with_the_next_one(tmp_path: Path, after: int) -> None:
    long_clip = write_clip(tmp_path / "gop.mp4", frames=30, fps=30, gop=8)  # seeks land on keyframes 0, 8, 16, 24
    everything = collect(AvSource(FileSourceConfig(id="cam", path=str(long_clip))))

    source = AvSource(FileSourceConfig(id="cam", path=str(long_clip)), start_after=(after, everything[after].pts))
    resumed = collect(source)

    assert [frame.index for frame in resumed] == list(range(after + 1, 30))
    assert source.stats.damage is None  # the frames before the resume point are not missing
    assert [frame.pts for frame in resumed] == pytest.approx([frame.pts for frame in everything[after + 1 :]])
    assert np.array_equal(resumed[0].image, everything[after + 1].image)


def test_av_source_when_resumed_without_timestamps_counts_frames_from_the_start(clip: Path) -> None:
    source = AvSource(FileSourceConfig(id="cam", path=str(clip)), start_after=(4, None))
    resumed = collect(source)

    assert [frame.index for frame in resumed] == list(range(5, 30))
    assert source.stats.damage is None


def test_av_source_when_hardware_decoding_is_unavailable_decodes_on_the_cpu_and_says_so_once(
    clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if has_cuda():
        pytest.skip("this machine has a CUDA GPU: NVDEC may well work here")
    source = AvSource(FileSourceConfig(id="cam", path=str(clip), hwaccel="cuda", loop=True, max_frames=75))

    with caplog.at_level("WARNING", logger="streamer.sources.av_source"):
        frames = collect(source)

    assert [frame.index for frame in frames] == list(range(75))  # two loops: two opens, one warning
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "hardware decoding with cuda is not available here" in warnings[0]
    first = collect(AvSource(FileSourceConfig(id="cam", path=str(clip), max_frames=1)))[0]
    assert np.array_equal(frames[0].image, first.image)


def test_av_source_when_hardware_decoding_is_asked_for_a_missing_file_reports_the_file(tmp_path: Path) -> None:
    source = AvSource(FileSourceConfig(id="cam", path=str(tmp_path / "nope.mp4"), hwaccel="cuda"))

    with pytest.raises(SourceError, match="no such file"):
        collect(source)


@requires_gpu()
def test_av_source_decodes_with_nvdec_on_a_gpu(clip: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="streamer.sources.av_source"):
        frames = collect(AvSource(FileSourceConfig(id="cam", path=str(clip), hwaccel="cuda")))

    assert len(frames) == 30 and frames[0].image.shape == (96, 160, 3)
    assert not caplog.records, "NVDEC should be used, not the CPU fallback"


def test_av_source_realtime_paces_frames_to_their_timestamps(short_clip: Path) -> None:
    started = time.monotonic()
    frames = collect(AvSource(FileSourceConfig(id="cam", path=str(short_clip), realtime=True)))
    elapsed = time.monotonic() - started

    assert len(frames) == 10
    assert elapsed >= 0.25  # the last frame is due 9/30 s after the first; lower bound only
    assert frames[-1].wall_time - frames[0].wall_time >= 0.25


def test_av_source_when_stop_is_set_mid_stream_ends_iteration(clip: Path) -> None:
    stop = threading.Event()
    source = AvSource(FileSourceConfig(id="cam", path=str(clip), loop=True))  # endless unless stop works
    taken: list[Frame] = []

    def read() -> None:
        for frame in only_frames(source.frames(stop)):
            taken.append(frame)
            if len(taken) == 5:
                stop.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(HANG_LIMIT_S)

    assert not thread.is_alive()
    assert 5 <= len(taken) <= 7  # at most what one packet had already decoded


def test_av_source_when_stop_is_set_while_pacing_returns_without_the_next_frame() -> None:
    stop = threading.Event()
    source = AvSource(LavfiSourceConfig(id="slow", graph="testsrc2=size=64x48:rate=0.05", realtime=True))
    first = threading.Event()
    taken: list[Frame] = []

    def read() -> None:
        for frame in only_frames(source.frames(stop)):
            taken.append(frame)
            first.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    assert first.wait(HANG_LIMIT_S)
    stop.set()  # the next frame is due 20 s after the first: only stop can end the wait early
    thread.join(HANG_LIMIT_S / 2)

    assert not thread.is_alive()
    assert len(taken) == 1


# --- lavfi ----------------------------------------------------------------------------------------


def test_av_source_reads_a_lavfi_pattern() -> None:
    source = AvSource(LavfiSourceConfig(id="pattern", graph=LAVFI, realtime=False, max_frames=6))

    frames = collect(source)

    assert [f.index for f in frames] == list(range(6))
    assert {(f.width, f.height) for f in frames} == {(64, 48)}
    assert frames[0].image.shape == (48, 64, 3)
    assert [f.pts for f in frames] == pytest.approx([i / 30 for i in range(6)], abs=1e-3)


def test_av_source_when_a_lavfi_pattern_with_a_duration_runs_out_ends() -> None:
    source = AvSource(LavfiSourceConfig(id="short", graph=f"{LAVFI}:duration=0.2", realtime=False))

    items = list(source.frames(threading.Event()))

    assert len(list(only_frames(items))) == 6 and items[-1] == StateChange(SourceState.ENDED, "end of stream")


# --- errors ---------------------------------------------------------------------------------------


def test_av_source_when_file_is_missing_raises_open_error_naming_id_and_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.mp4"

    with pytest.raises(SourceOpenError) as caught:
        collect(AvSource(FileSourceConfig(id="front-door", path=str(path))))

    assert "front-door" in str(caught.value) and str(path) in str(caught.value)


def test_av_source_when_file_is_random_bytes_raises_open_error(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).bytes(8192))

    with pytest.raises(SourceOpenError, match="noise.mp4"):
        collect(AvSource(FileSourceConfig(id="noise", path=str(path))))


def test_av_source_when_file_is_text_named_mp4_raises_open_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("these are not the frames you are looking for\n" * 20)

    with pytest.raises(SourceOpenError, match="notes"):
        collect(AvSource(FileSourceConfig(id="notes", path=str(path))))


def test_av_source_when_lavfi_graph_is_invalid_raises_open_error() -> None:
    with pytest.raises(SourceOpenError, match="no_such_filter"):
        collect(AvSource(LavfiSourceConfig(id="bad", graph="no_such_filter=size=64x48")))


def test_source_open_error_is_a_source_error() -> None:
    assert issubclass(SourceOpenError, SourceError)
    assert issubclass(SourceDecodeError, SourceError)


def test_av_source_open_error_is_chained_to_the_pyav_error(tmp_path: Path) -> None:
    with pytest.raises(SourceOpenError) as caught:
        collect(AvSource(FileSourceConfig(id="cam", path=str(tmp_path / "absent.mp4"))))

    assert isinstance(caught.value.__cause__, OSError)


def test_av_source_when_mp4_is_truncated_raises_open_error(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "cut.mp4")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # the index (moov) is at the end

    with pytest.raises(SourceOpenError):
        collect(AvSource(FileSourceConfig(id="cut", path=str(path))))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("start", "end"), [(0.2, 0.6), (0.1, 0.9), (0.4, 0.5)])
def test_av_source_when_mp4_middle_is_garbage_fails_cleanly(
    tmp_path: Path, seed: int, start: float, end: float
) -> None:
    path = write_clip(tmp_path / "damaged.mp4", frames=60)
    data = bytearray(path.read_bytes())
    a, z = int(len(data) * start), int(len(data) * end)
    data[a:z] = np.random.default_rng(seed).bytes(z - a)
    path.write_bytes(bytes(data))

    result = outcome(AvSource(FileSourceConfig(id="damaged", path=str(path))))  # collect() fails the test if it hangs

    if isinstance(result, Exception):
        assert isinstance(result, SourceError), f"{type(result).__name__} is not a SourceError: {result}"
        assert "damaged" in str(result)
    else:
        assert len(result) < 60
        assert [f.index for f in result] == list(range(len(result)))


# --- built from its config ------------------------------------------------------------------------


def test_build_source_from_a_file_config() -> None:
    config = FileSourceConfig(id="door", path="media/door.mp4", realtime=True, loop=True, max_frames=9)

    source = build_source(config)

    assert isinstance(source, AvSource)
    assert (source.id, source.url, source.format, source.live) == ("door", "media/door.mp4", None, False)
    assert (source.realtime, source.loop, source.config.max_frames) == (True, True, 9)


def test_build_source_from_a_lavfi_config() -> None:
    source = build_source(LavfiSourceConfig(id="pattern", graph=LAVFI, max_frames=3))

    assert isinstance(source, AvSource)
    assert (source.id, source.url, source.format, source.live) == ("pattern", LAVFI, "lavfi", True)
    assert source.realtime is True and source.config.max_frames == 3


def test_build_source_from_an_rtsp_config_reads_its_timeouts_and_backoff_from_it() -> None:
    config = RtspSourceConfig(id="door", url="rtsp://cam/x", open_timeout_s=3, read_timeout_s=4,
                              backoff_initial_s=0.2, backoff_max_s=2, max_attempts=5, options={"stimeout": "1"})

    source = build_source(config)

    assert isinstance(source, AvSource) and source.backoff is not None
    assert (source.open_timeout_s, source.read_timeout_s, source.read_wait_s) == (3, 4, 2)
    assert (source.backoff.initial_s, source.backoff.max_s, source.backoff.max_attempts) == (0.2, 2, 5)
    assert source.options["stimeout"] == "1" and source.options["rtsp_transport"] == "tcp"


def test_build_source_from_an_hls_config_gives_one_read_the_whole_read_timeout() -> None:
    source = build_source(HlsSourceConfig(id="tv", url="http://tv/index.m3u8", read_timeout_s=3))

    assert isinstance(source, AvSource) and source.read_wait_s == 3


def test_build_source_result_decodes(clip: Path) -> None:
    frames = collect(build_source(FileSourceConfig(id="c", path=str(clip), max_frames=3)))  # type: ignore[arg-type]

    assert [f.index for f in frames] == [0, 1, 2]


def test_build_source_when_a_live_source_is_asked_to_resume_refuses() -> None:
    with pytest.raises(TypeError, match="only file sources resume"):
        build_source(LavfiSourceConfig(id="a", graph=LAVFI), start_after=(3, 0.1))


@pytest.mark.parametrize(
    ("config", "key"),
    [
        (FileSourceConfig(id="a", path="a.mp4", max_fps=0), "$.max_fps"),
        (FileSourceConfig(id="a", path=""), "$.path"),
        (RtspSourceConfig(id="a", url="rtsp://cam/x", open_timeout_s=-1), "$.open_timeout_s"),
        (RtspSourceConfig(id="a", url="http://cam/x"), "$.url"),
        (LavfiSourceConfig(id="a b", graph=LAVFI), "$.id"),
        (LavfiSourceConfig(graph=LAVFI), "$.id"),
    ],
)
def test_av_source_when_its_config_built_in_python_is_bad_raises_the_config_error_toml_would(
    config: FileSourceConfig, key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        AvSource(config)

    assert caught.value.path == key


def test_file_config_defaults_to_a_blocking_queue_of_eight() -> None:
    config = FileSourceConfig(id="a", path="a.mp4")

    assert (config.policy, config.queue_size) == ("block", 8)


@pytest.mark.parametrize(
    "config", [LavfiSourceConfig(id="a", graph=LAVFI), RtspSourceConfig(id="a", url="rtsp://cam/x"),
               HlsSourceConfig(id="a", url="http://tv/x.m3u8"), WebcamSourceConfig(id="a", device="/dev/video0")]
)
def test_live_config_defaults_to_a_latest_queue_of_two(config: LavfiSourceConfig) -> None:
    assert (config.policy, config.queue_size) == ("latest", 2)


def test_av_source_with_max_fps_keeps_at_most_that_many_frames_a_second_and_counts_the_others(clip: Path) -> None:
    source = AvSource(FileSourceConfig(id="cam", path=str(clip), max_fps=10))
    frames = collect(source)  # the clip has 30 frames at 30 fps

    assert len(frames) == 10
    assert [f.index for f in frames] == list(range(10))
    assert all(b.pts - a.pts >= 0.1 - 1e-6 for a, b in zip(frames, frames[1:]))
    assert source.stats.over_max_fps == 20


def test_av_source_reports_connecting_then_running_then_ended(clip: Path) -> None:
    items = AvSource(FileSourceConfig(id="cam", path=str(clip))).frames(threading.Event())
    changes = [item.state for item in items if isinstance(item, StateChange)]

    assert changes == [SourceState.CONNECTING, SourceState.RUNNING, SourceState.ENDED]


def closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when this returns: nothing listens there


def test_av_source_when_a_camera_never_comes_up_gives_up_after_its_attempts_with_the_password_masked() -> None:
    url = f"rtsp://admin:hunter2@127.0.0.1:{closed_port()}/live"
    source = AvSource(RtspSourceConfig(id="door", url=url, open_timeout_s=1, read_timeout_s=1,
                                       backoff_initial_s=0.05, backoff_max_s=0.1, max_attempts=3))
    seen: list[SourceState] = []

    with pytest.raises(SourceOpenError, match="gave up after 3 attempts") as caught:
        for item in source.frames(threading.Event()):
            if isinstance(item, StateChange):
                seen.append(item.state)

    assert "hunter2" not in str(caught.value) and "rtsp://***@127.0.0.1" in str(caught.value)
    assert seen == [SourceState.CONNECTING, SourceState.RECONNECTING] * 2 + [SourceState.CONNECTING]
    assert (source.stats.attempts, source.stats.reconnects) == (3, 1)  # three attempts, one outage
    assert "hunter2" not in source.describe()


def test_av_source_when_the_format_is_missing_from_pyav_says_how_to_get_it() -> None:
    source = AvSource(WebcamSourceConfig(id="webcam", device="/dev/video0"))

    try:
        collect(source)
    except SourceRefusedError as error:  # this PyAV build has no v4l2 input
        assert "no-binary" in str(error) or "video0" in str(error)
    except SourceOpenError as error:  # a build with v4l2, on a machine with no camera
        assert "video0" in str(error)


# --- live sources that freeze: outages, never refusals -------------------------------------------


def first_reconnect(source: AvSource) -> StateChange:
    """The source's first RECONNECTING change (it must not raise: a frozen server is no refusal)."""
    stop = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        changes = (item for item in source.frames(stop) if isinstance(item, StateChange))
        future = pool.submit(lambda: next(c for c in changes if c.state is SourceState.RECONNECTING))
        try:
            return future.result(timeout=HANG_LIMIT_S)
        finally:
            stop.set()


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_av_source_when_a_server_accepts_and_says_nothing_reconnects_saying_it_timed_out(
    silent_port: int, scheme: str
) -> None:
    url = f"{scheme}://viewer:hunter2@127.0.0.1:{silent_port}/live"
    kind = RtspSourceConfig if scheme == "rtsp" else HlsSourceConfig
    source = AvSource(kind(id="door", url=url, open_timeout_s=0.5, read_timeout_s=0.5,
                           backoff_initial_s=0.05, backoff_max_s=0.1))

    change = first_reconnect(source)

    assert change.reason is not None and "no answer within open_timeout_s=0.5" in change.reason
    assert "Invalid data" not in change.reason.split("(")[0] and "hunter2" not in change.reason
    assert (source.stats.attempts, source.stats.reconnects) == (1, 1)


# --- timestamps that go back -----------------------------------------------------------------------


def test_av_source_when_two_ts_segments_are_concatenated_delivers_every_frame_on_one_timeline(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    segment = write_ts_clip(tmp_path / "segment.ts", frames=30)
    source = AvSource(FileSourceConfig(id="cam", path=str(concatenate(tmp_path / "both.ts", segment, segment))))

    with caplog.at_level("WARNING", logger="streamer.sources.timeline"):
        frames = collect(source)

    pts = [frame.pts for frame in frames]
    assert [frame.index for frame in frames] == list(range(60))
    assert all(b > a for a, b in zip(pts, pts[1:]))
    assert pts[30] == pytest.approx(pts[29] + 1 / 30, abs=1e-3)  # the second segment goes on one step later
    assert source.stats.discontinuities == 1
    assert [record.getMessage() for record in caplog.records if "jumped back" in record.getMessage()] == [
        "source 'cam' (file '%s'): its timestamps jumped back from 0.967 s to 0.000 s; its frames go on at 1.000 s"
        % (tmp_path / "both.ts")
    ]


@pytest.mark.parametrize(("options", "jumps"), [({}, 0), ({"correct_ts_overflow": "0"}, 1)])
def test_av_source_when_the_pts_wraps_at_33_bits_delivers_every_frame_in_order(
    tmp_path: Path, options: dict[str, str], jumps: int
) -> None:
    """FFmpeg corrects one wrap by itself; where it does not, the jump back starts a new segment."""
    wrapping = write_ts_clip(tmp_path / "wrap.ts", frames=30, first_pts=2**33 - 10 * 3000)  # wraps at frame 10
    source = AvSource(FileSourceConfig(id="cam", path=str(wrapping)))
    source.options.update(options)  # FFmpeg's own options: no file table takes them

    frames = collect(source)

    pts = [frame.pts for frame in frames]
    assert len(frames) == 30 and all(b > a for a, b in zip(pts, pts[1:]))
    assert pts[-1] - pts[0] == pytest.approx(29 / 30, abs=1e-3)
    assert source.stats.discontinuities == jumps


# --- damaged and empty files -------------------------------------------------------------------------


def test_av_source_when_a_file_is_complete_reports_no_damage(clip: Path) -> None:
    source = AvSource(FileSourceConfig(id="cam", path=str(clip)))

    assert len(collect(source)) == 30
    assert (source.stats.damage, source.stats.decode_errors, source.stats.attempts) == (None, 0, 1)


def test_av_source_when_a_faststart_mp4_is_cut_in_half_ends_saying_how_much_is_missing(tmp_path: Path) -> None:
    path = cut(write_clip(tmp_path / "cut.mp4", frames=90, faststart=True))  # the index survives the cut
    source = AvSource(FileSourceConfig(id="cut", path=str(path)))

    items = list(source.frames(threading.Event()))

    frames = [item for item in items if isinstance(item, Frame)]
    assert 0 < len(frames) < 90
    assert source.stats.damage is not None and " of the 90 frames it declares" in source.stats.damage
    assert items[-1] == StateChange(SourceState.ENDED, f"end of file, {source.stats.damage}")


def test_av_source_when_packets_are_garbage_counts_each_one_that_fails(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "garbled.mp4", frames=90, faststart=True)
    data = bytearray(path.read_bytes())
    start, end = int(len(data) * 0.4), int(len(data) * 0.6)
    data[start:end] = np.random.default_rng(0).bytes(end - start)
    path.write_bytes(bytes(data))
    source = AvSource(FileSourceConfig(id="garbled", path=str(path)))

    frames = collect(source)

    assert source.stats.decode_errors > 0 and len(frames) < 90
    assert source.stats.damage is not None
    assert f"{source.stats.decode_errors} decode errors" in source.stats.damage


def test_av_source_when_a_file_is_empty_says_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()

    with pytest.raises(SourceRefusedError, match="empty file") as caught:
        collect(AvSource(FileSourceConfig(id="cam", path=str(path))))

    assert "Errno" not in str(caught.value)

