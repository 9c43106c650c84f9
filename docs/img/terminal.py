"""Make docs/img/terminal.png, the README's picture of `streamer run`'s progress display: the real display
(streamer/console/display.py) of a real pipeline, exported by rich and rendered by headless Chromium.

    python docs/img/terminal.py [--seconds 6] [--out docs/img/terminal.png]

The pipeline: the quickstart's file (examples/media/astronaut.mp4, paced to real time, so its bar is
half way), two lavfi cameras (one held to `max_fps = 5`, so its drops show a reason) and an RTSP
camera nobody serves (reconnecting, its last error under the table), CenterFace, a JSONL sink in a
temporary folder. After `--seconds` the display is drawn into a recording rich Console, exported as
SVG, and Chromium (`chromium --headless --screenshot`) turns it into a small palette PNG.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WIDTH = 104  # columns
COLOURS = 64  # a palette PNG: a terminal has few colours
COMMAND = "streamer run demo.toml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="how long the pipeline runs before the picture")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "terminal.png")
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("cannot make the picture: no chromium (apt-get install chromium)", file=sys.stderr)
        return 1
    import logging

    import anyio

    logging.basicConfig(level=logging.ERROR)  # the camera nobody serves would log each retry over the picture
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        svg = anyio.run(record_display, Path(folder), args.seconds)
        png = screenshot(browser, svg, Path(folder))
    save(png, args.out)
    print(f"{args.out}: {args.out.stat().st_size // 1024} KiB")
    return 0


def demo_config(folder: Path) -> dict:
    with socket.socket() as probe:  # a port nobody listens on: the camera keeps reconnecting
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    return {
        "model": {"id": "centerface"},
        "batching": {"max_batch_size": 1, "max_wait_ms": 5},
        "sources": [
            {"type": "file", "id": "astronaut", "path": str(ROOT / "examples" / "media" / "astronaut.mp4"), "realtime": True},
            {"type": "lavfi", "id": "lobby", "graph": "testsrc2=size=640x360:rate=15"},
            {"type": "lavfi", "id": "parking", "graph": "testsrc2=size=640x360:rate=15", "max_fps": 5},
            {"type": "rtsp", "id": "gate", "url": f"rtsp://viewer:secret@127.0.0.1:{closed}/stream1",
             "open_timeout_s": 1, "backoff_initial_s": 1, "backoff_max_s": 2},
        ],
        "stages": [{"type": "filter", "min_confidence": 0.5}],
        "sinks": [{"type": "jsonl", "path": "out/demo.jsonl"}],  # in the temporary folder, the working directory
    }


async def record_display(folder: Path, seconds: float) -> str:
    """The display after `seconds` of a real run, as rich's SVG of a terminal window."""
    import anyio
    from rich.console import Console
    from rich.text import Text

    import streamer
    from streamer.console.display import RunDisplay

    display = RunDisplay(Console(file=io.StringIO(), force_terminal=True, width=WIDTH), "centerface")
    async with streamer.open(demo_config(folder), results=False) as stream, display.watch(stream):
        await anyio.sleep(seconds)
        recording = Console(file=io.StringIO(), record=True, force_terminal=True, width=WIDTH, color_system="truecolor")
        recording.print(Text("$ ", style="green") + Text(COMMAND))
        recording.print(display.renderable())
        stream.stop()
    return recording.export_svg(title=COMMAND)


def screenshot(browser: str, svg: str, folder: Path) -> bytes:
    """The SVG, at its own size, as PNG bytes (Chromium headless)."""
    width, height = (round(float(number)) for number in re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg).groups())
    page = folder / "terminal.html"
    page.write_text(f'<html><body style="margin:0;background:#fff">{svg}</body></html>')
    out = folder / "terminal.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={width},{height}",
         f"--screenshot={out}", page.as_uri()],
        check=True, capture_output=True, timeout=60,
    )
    return out.read_bytes()


def save(png: bytes, out: Path) -> None:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(COLOURS, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)


if __name__ == "__main__":
    raise SystemExit(main())
