"""The one table that decides what a PyAV failure means: a refusal (fail now) or an outage (retry)."""

from __future__ import annotations

import av
import pytest

from streamer.errors import SourceDecodeError, SourceOpenError, SourceRefusedError, SourceStalledError
from streamer.config.schema import FileSourceConfig, RtspSourceConfig
from streamer.sources import AvSource
from streamer.sources.failures import open_failure, read_failure, refusal

INVALID_DATA = av.error.InvalidDataError(1094995529, "Invalid data found when processing input", "rtsp://cam/x")


def camera() -> AvSource:
    return AvSource(RtspSourceConfig(id="door", url="rtsp://cam/x", open_timeout_s=10, read_timeout_s=10))


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (av.error.FileNotFoundError(2, "No such file or directory", "/dev/video0"), "no such file or device"),
        (PermissionError(13, "Permission denied"), "permission denied"),
        (av.error.HTTPUnauthorizedError(825242872, "Server returned 401 Unauthorized"), "credentials refused"),
        (av.error.HTTPForbiddenError(858797304, "Server returned 403 Forbidden"), "credentials refused"),
        (av.error.HTTPNotFoundError(875574520, "Server returned 404 Not Found"), "no such stream (404)"),
        (av.error.DecoderNotFoundError(1128613112, "Decoder not found"), "not supported by this FFmpeg"),
        (ValueError("no container format 'v4l2'"), "unknown format"),
    ],
)
def test_refusal_when_no_retry_can_help_says_why(error: BaseException, says: str) -> None:
    assert refusal(error) == says


@pytest.mark.parametrize(
    "error",
    [
        INVALID_DATA,  # a ValueError in PyAV 18, and yet no refusal
        av.error.ExitError(1414092869, "Immediate exit requested"),
        av.error.ConnectionResetError(104, "Connection reset by peer"),
        av.error.EOFError(541478725, "End of file"),
        av.error.HTTPServerError(1163346256, "Server returned 5XX Server Error reply"),
    ],
)
def test_refusal_when_the_failure_can_pass_is_none(error: BaseException) -> None:
    assert refusal(error) is None


def test_refusal_when_a_network_server_gives_eperm_is_none_but_a_local_path_is_refused() -> None:
    eperm = av.error.PermissionError(1, "Operation not permitted", "rtsp://cam/x")

    assert refusal(eperm, network=True) is None  # an RTSP reply FFmpeg has no code for: it may pass
    assert refusal(eperm) == "permission denied"
    assert type(open_failure(eperm, camera(), str(eperm), elapsed_s=0.1)) is SourceOpenError


def test_open_failure_when_a_live_open_took_its_whole_timeout_says_it_timed_out() -> None:
    error = open_failure(INVALID_DATA, camera(), str(INVALID_DATA), elapsed_s=10.0)

    assert type(error) is SourceOpenError  # not a refusal: the camera may come back
    assert "no answer within open_timeout_s=10" in error.message


def test_open_failure_when_a_live_open_fails_fast_with_invalid_data_retries_as_cannot_open() -> None:
    error = open_failure(INVALID_DATA, camera(), str(INVALID_DATA), elapsed_s=0.1)

    assert type(error) is SourceOpenError and "cannot open it: [Errno 1094995529]" in error.message


def test_open_failure_when_a_file_is_unreadable_refuses_it() -> None:
    file = AvSource(FileSourceConfig(id="f", path="/nowhere/x.mp4"))

    error = open_failure(INVALID_DATA, file, str(INVALID_DATA), elapsed_s=0.0)

    assert type(error) is SourceRefusedError and "cannot open it" in error.message


def test_open_failure_when_the_format_is_unknown_adds_the_hint_and_only_then() -> None:
    unknown = open_failure(ValueError("no container format 'v4l2'"), camera(), "no container format", 0.0, "; hint")
    missing = open_failure(av.error.FileNotFoundError(2, "No such file"), camera(), "No such file", 0.0, "; hint")

    assert unknown.message.endswith("; hint") and not missing.message.endswith("; hint")


def test_read_failure_when_nothing_came_for_the_read_timeout_says_no_frame_within_it() -> None:
    error = read_failure(INVALID_DATA, camera(), str(INVALID_DATA), silent_s=9.6)

    assert isinstance(error, SourceStalledError)
    assert "no frame within read_timeout_s=10 (none for 9.6 s)" in error.message


def test_read_failure_when_the_stream_breaks_between_frames_is_a_decode_error() -> None:
    error = read_failure(av.error.ConnectionResetError(104, "Connection reset"), camera(), "reset", silent_s=0.1)

    assert isinstance(error, SourceDecodeError) and "reading failed: reset" in error.message
