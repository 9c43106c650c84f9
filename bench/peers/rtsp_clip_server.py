#!/usr/bin/python3
"""Serve an H.264 MP4 over RTSP in real time, as a camera would, without re-encoding it.

Runs under Debian's /usr/bin/python3 (which has GStreamer's `gi` bindings), never the project's
interpreter: it imports neither streamer nor numpy. Every client of every mount gets its own playback
of the file from the start, paced to the file's timestamps by the server's clock; the H.264 packets
are passed through untouched (qtdemux ! h264parse ! rtph264pay), so serving costs next to no CPU.
Prints `READY <port>` once listening; exits on SIGTERM or SIGINT.

    /usr/bin/python3 bench/peers/rtsp_clip_server.py --clip clip.mp4 --mounts 4    # rtsp://127.0.0.1:<port>/s0 .. /s3

Debian packages: python3-gst-1.0 gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

ELEMENTS = ("filesrc", "qtdemux", "h264parse", "rtph264pay")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", help="the H.264 MP4 file to serve")
    parser.add_argument("--mounts", type=int, default=1, help="mount points /s0, /s1, ...")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free one (printed after READY)")
    parser.add_argument("--check", action="store_true", help="exit 0 if every element needed is installed")
    return parser.parse_args(argv)


def launch_line(clip: str) -> str:
    return f'( filesrc location="{clip}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )'


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    Gst.init(None)
    missing = [name for name in ELEMENTS if Gst.ElementFactory.find(name) is None]
    if args.check or missing:
        sys.exit(f"missing GStreamer elements: {' '.join(missing)}" if missing else 0)
    server = GstRtspServer.RTSPServer(address="127.0.0.1", service=str(args.port))
    for index in range(args.mounts):
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(args.clip))
        factory.set_shared(False)  # each client its own playback from the start
        server.get_mount_points().add_factory(f"/s{index}", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.port}")
    loop = GLib.MainLoop()
    for number in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, number, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()


if __name__ == "__main__":
    main(sys.argv[1:])
