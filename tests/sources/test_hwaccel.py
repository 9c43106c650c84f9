"""Hardware decoding: thread cap, failure classification, fallbacks counted; NVDEC itself on a GPU."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import av
import pytest

from streamer.config.schema import FileSourceConfig
from streamer.frames import Frame
from streamer.sources import AvSource
from streamer.sources.hwaccel import (
    HARDWARE_DECODE_THREADS,
    NVDEC_MAX_SURFACES,
    HardwareDecoding,
    hardware_decode_threads,
    hardware_failed,
)
from streamer.sources.stats import SourceStats
from tests.engine.gpu import has_cuda, requires_gpu
from tests.rtsp import free_port

LARGEST_PICTURE_BUFFER = 16  # H.264 and HEVC level limits
FFMPEG_SPARE_SURFACES = 5  # nvdec's 2 spare and the 3 base work surfaces of ff_decode_get_hw_frames_ctx

no_cuda_here = pytest.mark.skipif(has_cuda(), reason="this machine has a CUDA GPU: the device would open")


def hardware(device_type: str | None = "cuda", device: int | None = None, cpu_count: int | None = None) -> HardwareDecoding:
    return HardwareDecoding(device_type, device, SourceStats(), "source 'cam'", str, cpu_count=cpu_count)


def frames_of(source: AvSource) -> list[Frame]:
    return [item for item in source.frames(threading.Event()) if isinstance(item, Frame)]


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 2), (8, 8), (16, HARDWARE_DECODE_THREADS), (64, 8)])
def test_hardware_decode_threads_when_a_machine_has_many_cores_stay_within_nvdec_surfaces(cores, threads):
    assert hardware_decode_threads(cores) == threads
    assert LARGEST_PICTURE_BUFFER + FFMPEG_SPARE_SURFACES + hardware_decode_threads(cores) <= NVDEC_MAX_SURFACES


def test_hardware_accel_when_cuda_shares_the_primary_context_on_the_sources_gpu():
    accel = hardware("cuda", device=1).accel()

    assert accel.options == {"primary_ctx": "1"}
    assert accel.device_id == 1


@no_cuda_here
def test_hardware_failed_when_the_cuda_device_cannot_be_created():
    from av.codec.hwaccel import HWAccel

    with pytest.raises(av.error.FFmpegError) as caught:
        HWAccel("cuda", options={"primary_ctx": "1"}).create(av.Codec("h264", "r"))

    assert hardware_failed(caught.value)


def test_hardware_failed_when_the_network_refuses_is_not_the_hardware():
    from av.codec.hwaccel import HWAccel

    with pytest.raises(OSError) as caught:
        av.open(f"rtsp://127.0.0.1:{free_port()}/cam", hwaccel=HWAccel("cuda"), timeout=(2, 2))

    assert not hardware_failed(caught.value)


@no_cuda_here
def test_hardware_open_when_a_network_error_comes_first_keeps_hardware_decoding_for_the_retry(clip: Path):
    """The first open meets a refused connection; the retry finds the stream and tries the hardware again."""
    attempts: list[Any] = []
    port = free_port()

    def open_input(accel: Any) -> Any:
        attempts.append(accel)
        if len(attempts) == 1:
            return av.open(f"rtsp://127.0.0.1:{port}/cam", hwaccel=accel, timeout=(2, 2))
        return av.open(str(clip), hwaccel=accel)

    decoding = hardware()
    with pytest.raises(ConnectionRefusedError):
        decoding.open(open_input)

    assert decoding.device_type == "cuda" and decoding.stats.hardware_fallbacks == 0
    decoding.open(open_input).close()  # no CUDA here: now the device fails, and only that turns it off
    assert [accel is not None for accel in attempts] == [True, True, False]
    assert decoding.device_type is None and decoding.stats.hardware_fallbacks == 1


@no_cuda_here
def test_av_source_when_hardware_is_unavailable_counts_one_fallback_and_stops_asking(clip: Path, caplog):
    source = AvSource(FileSourceConfig(id="cam", path=str(clip), hwaccel="cuda", loop=True, max_frames=75))

    with caplog.at_level("WARNING", logger="streamer.sources.hwaccel"):
        frames = frames_of(source)

    assert len(frames) == 75 and source.stats.sessions == 3  # three passes over the 30-frame clip
    assert source.stats.hardware_fallbacks == 1 and source.hwaccel is None
    assert [record.levelname for record in caplog.records] == ["WARNING"]
    assert frames[0].decoded.format.name == "yuv420p"


def test_hardware_check_when_the_first_frame_is_in_a_software_format_counts_a_fallback():
    decoding = hardware()
    decoding.expect_hardware_frames("cuda")

    decoding.check(av.VideoFrame(64, 48, "yuv420p"))
    decoding.check(av.VideoFrame(64, 48, "yuv420p"))  # only a connection's first frame is looked at

    assert decoding.stats.hardware_fallbacks == 1


@pytest.mark.parametrize("pixel_format", ["nv12", "p010le"])
def test_hardware_check_when_frames_come_as_the_hardware_gives_them_counts_nothing(pixel_format):
    decoding = hardware()
    decoding.expect_hardware_frames("cuda")

    decoding.check(av.VideoFrame(64, 48, pixel_format))

    assert decoding.stats.hardware_fallbacks == 0


@requires_gpu()
def test_av_source_when_nvdec_decodes_at_16_threads_gives_nv12_frames_and_no_fallback(clip: Path):
    source = AvSource(FileSourceConfig(id="cam", path=str(clip), hwaccel="cuda", hwaccel_device=0))
    source.hardware = HardwareDecoding("cuda", 0, source.stats, source.describe(), str, cpu_count=16)

    frames = frames_of(source)

    assert len(frames) == 30
    assert {frame.decoded.format.name for frame in frames} == {"nv12"}
    assert source.stats.hardware_fallbacks == 0 and source.hwaccel == "cuda"


@no_cuda_here
async def test_metrics_when_a_source_asked_for_unavailable_hardware_count_its_fallback(centerface, clip: Path):
    import streamer
    from streamer.service.metrics import PipelineMetrics
    from tests.service.helpers import parse, value

    metrics = PipelineMetrics()
    config = {"sources": [{"type": "file", "id": "cam", "path": str(clip), "hwaccel": "cuda", "max_frames": 5}]}
    async with streamer.open(config, model=centerface, results=False, observers=[metrics]) as stream:
        metrics.attach(stream)
        await stream.wait()

    samples = parse(metrics.exposition()[0].decode())
    assert value(samples, "streamer_source_hardware_fallbacks_total", source="cam") == 1
    assert value(samples, "streamer_source_frames_processed_total", source="cam") == 5
