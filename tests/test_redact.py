from __future__ import annotations

import pytest

from streamer.redact import looks_secret, redact, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/live?x=1", "rtsp://***@10.0.0.5:554/live?x=1"),
        ("rtsp://Tk9qUserOnly@127.0.0.1:8554/x", "rtsp://***@127.0.0.1:8554/x"),
        ("rtsp://u:p@ss@cam/x", "rtsp://***@cam/x"),
        ("http://h/live.m3u8?token=abc&ch=2", "http://h/live.m3u8?token=***&ch=2"),
        ("https://h/x?X-Amz-Signature=ab&X-Amz-Credential=cd&a=1", "https://h/x?X-Amz-Signature=***&X-Amz-Credential=***&a=1"),
        ("https://h/x?API_KEY=1#access_token=2", "https://h/x?API_KEY=***#access_token=***"),
        ("rtsp://10.0.0.5/live", "rtsp://10.0.0.5/live"),
        ("/dev/video0", "/dev/video0"),
    ],
)
def test_redact_url_when_the_url_carries_credentials(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize("name", ["token", "Api_Key", "apikey", "passwd", "pwd", "secret", "sig", "Authorization", "sessionid"])
def test_looks_secret_when_the_name_holds_a_secret_word(name: str) -> None:
    assert looks_secret(name)


@pytest.mark.parametrize("name", ["channel", "format", "width", "t"])
def test_looks_secret_when_the_name_is_ordinary(name: str) -> None:
    assert not looks_secret(name)


def test_redact_when_ffmpeg_echoes_the_url_and_its_pieces() -> None:
    url = "rtsp://admin:hunter%2A2@cam/live?token=Zq9tok"
    message = f"[Errno 111] Connection refused: '{url}'; password hunter*2, segment live?token=Zq9tok, auth=Bearer9"

    cleaned = redact(message, url)

    assert all(secret not in cleaned for secret in ("hunter", "Zq9tok", "Bearer9"))
    assert "rtsp://***@cam/live?token=***" in cleaned


def test_redact_when_a_short_password_equals_a_word() -> None:
    url = "rtsp://u:p@cam/x"

    assert redact(f"rtsp failed: {url}", url) == "rtsp failed: rtsp://***@cam/x"


def test_redact_when_the_text_has_no_secret() -> None:
    text = "source 'cam' (rtsp 'rtsp://cam/x'): connection refused, retry in 2.0 s"

    assert redact(text, "rtsp://cam/x") == text
