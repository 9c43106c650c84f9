"""A real `streamer run` daemon with two lavfi cameras, and headless Chromium to look at its page.

Shared by tests/service/test_page.py and docs/img/page.py (the README's screenshot). Camera `face`
is the astronaut's face sliding left to right across a grey picture, again every 5 s, through a
zone in the middle of the frame (so centerface, the track and the zones stage give a zone_enter
each pass); camera `pat` is FFmpeg's testsrc2 pattern.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
)
SERVING = re.compile(r"admin API on (http://\S+) ")
FACE_WIDTH, FACE_HEIGHT = 480, 270
FACE_SPEED = 120  # px a second: across 600 px (in from the left edge, out at the right) in 5 s
ZONE = {"name": "middle", "polygon": [[0.4, 0.0], [0.6, 0.0], [0.6, 1.0], [0.4, 1.0]]}


def browser_missing() -> str | None:
    """Why no browser test can run here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: apt-get install {package} (.ci/run installs it)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is missing: pip install 'streamer[dev]'"
    return None


def face_graph(face_png: Path) -> str:
    """The sliding face as a lavfi graph (the config file is trusted: `movie` may read the PNG)."""
    x = f"mod(t*{FACE_SPEED}\\,{FACE_WIDTH + 120})-120"
    return (f"color=c=0x303840:size={FACE_WIDTH}x{FACE_HEIGHT}:rate=10[bg];movie={face_png}[fg];"
            f"[bg][fg]overlay=x='{x}':y=70")


def write_face(path: Path) -> Path:
    """The astronaut's face (scikit-image's photo), 120 x 132 px."""
    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()).crop((130, 20, 330, 240)).resize((120, 132)).save(path)
    return path


def write_config(folder: Path, token_env: str | None = None) -> Path:
    face = write_face(folder / "face.png")
    server = {"port": 0, **({"token_env": token_env} if token_env else {})}
    tables = {
        "model": {"id": "centerface"},
        "batching": {"max_batch_size": 2, "max_wait_ms": 10},
        "sources": [
            {"type": "lavfi", "id": "face", "graph": face_graph(face)},
            {"type": "lavfi", "id": "pat", "graph": "testsrc2=size=320x180:rate=10"},
        ],
        "stages": [
            {"type": "track"},
            {"type": "zones", "relative": True, "zones": [ZONE], "sources": ["face"]},
            {"type": "presence"},
        ],
        "server": server,
    }
    config = folder / "page.toml"
    config.write_text(_toml(tables))
    return config


def _toml(tables: dict[str, Any]) -> str:
    """Just enough TOML for write_config (JSON strings, numbers and arrays are TOML values too)."""
    lines: list[str] = []
    for name, table in tables.items():
        for row in table if isinstance(table, list) else [table]:
            lines.append(f"[[{name}]]" if isinstance(table, list) else f"[{name}]")
            for key, value in row.items():
                if isinstance(value, list) and value and isinstance(value[0], dict):
                    inline = ", ".join("{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in item.items()) + "}" for item in value)
                    lines.append(f"{key} = [{inline}]")
                else:
                    lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


class Daemon:
    """`python -m streamer run` in a subprocess; `url` once it serves, `log` its stderr so far."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.log: list[str] = []
        self.url: str | None = None
        self._serving = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamer", "--log-level", "info", "run", str(config)],
            cwd=config.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})},
        )
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            if self.url is None and (match := SERVING.search(line)):
                self.url = match[1]
                self._serving.set()
        self._serving.set()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until /readyz says ready (the model is loaded, a camera runs)."""
        if not self._serving.wait(timeout) or self.url is None:
            raise AssertionError("the daemon did not start serving:\n" + "".join(self.log))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=5):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the daemon never became ready:\n" + "".join(self.log))

    def get_json(self, path: str, headers: dict[str, str] | None = None) -> Any:
        request = urllib.request.Request(self.url + path, headers=headers or {})  # type: ignore[operator]
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@contextmanager
def running_daemon(token: str | None = None) -> Iterator[Daemon]:
    """A daemon with the two cameras, ready; stopped (SIGTERM) on leaving."""
    with tempfile.TemporaryDirectory(prefix="streamer-page-") as folder:
        env = {"STREAMER_PAGE_TOKEN": token} if token else None
        daemon = Daemon(write_config(Path(folder), "STREAMER_PAGE_TOKEN" if token else None), env)
        try:
            daemon.wait_ready()
            yield daemon
        finally:
            daemon.stop()


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """Headless Chromium driven by chromedriver (Selenium), with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="streamer-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
        try:  # the page's own size, whatever the window's frame takes
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                   {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
            driver.set_script_timeout(10)
            yield driver
        finally:
            driver.quit()
