"""Make docs/img/page.png, the README's picture of the live page: the real page of a real daemon.

    python docs/img/page.py [--seconds 25] [--out docs/img/page.png]

Starts `streamer run` with the two lavfi cameras of tests/service/page_daemon.py (the sliding face
through a zone, and testsrc2), opens its page in headless Chromium, lets the charts and the event
list fill for `--seconds`, and saves the screenshot as a small palette PNG. Needs what the browser
tests need: chromium, chromium-driver and selenium.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.service.page_daemon import browser_missing, chromium, running_daemon  # noqa: E402

WIDTH, HEIGHT = 1280, 860
IN_THE_ZONE_S = 0.7  # after a zone_enter is listed, for the tile's preview to show the face inside
COLOURS = 256  # a palette PNG: the page is flat colours, and the previews survive it


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=25.0, help="how long the page runs before the picture")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "page.png")
    args = parser.parse_args()
    if (missing := browser_missing()) is not None:
        print(f"cannot make the picture: {missing}", file=sys.stderr)
        return 1
    with running_daemon() as daemon, chromium(WIDTH, HEIGHT) as browser:
        browser.get(daemon.url + "/")
        time.sleep(args.seconds)
        entered = zone_enters(browser)
        deadline = time.monotonic() + 15
        while zone_enters(browser) == entered and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(IN_THE_ZONE_S)  # the face is in the zone: its box and label show in the tile
        png = browser.get_screenshot_as_png()
    save(png, args.out)
    print(f"{args.out}: {args.out.stat().st_size // 1024} KiB")
    return 0


def zone_enters(browser) -> int:
    return browser.execute_script("return document.querySelectorAll('#events li[data-kind=zone_enter]').length")


def save(png: bytes, out: Path) -> None:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(COLOURS, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)


if __name__ == "__main__":
    sys.exit(main())
