#!/usr/bin/python3
"""A small RTSP server for the tests, built on GStreamer's gst-rtsp-server.

Runs under the system /usr/bin/python3 (which has `gi`), never the project's interpreter: it must not
import streamer or numpy. Prints `READY <port>` once listening; exits cleanly on SIGTERM or SIGINT.

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --path /a --path /b --width 320 --height 240
    rtsp://127.0.0.1:8554/a

Debian packages: python3-gst-1.0 gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly (x264enc); gstreamer1.0-plugins-bad comes with the
RTSP server library and brings openh264enc/openh264dec, which serve as fallback encoder and file decoder.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer

ENCODERS = {  # the first one installed wins
    "x264enc": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop}",
    "openh264enc": "openh264enc complexity=low gop-size={gop}",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8554, help="0 picks a free one (printed after READY)")
    parser.add_argument("--path", action="append", help="mount point; repeat for several (default /stream)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--gop", type=int, help="frames from one keyframe to the next (default: --fps, one a second)")
    parser.add_argument("--own-playback", action="store_true",
                        help="each client its own encoder, starting at a keyframe (default: clients of a mount share one)")
    parser.add_argument("--user", help="require RTSP basic auth with this user and --password")
    parser.add_argument("--password", default="")
    parser.add_argument("--source", default="pattern", help="'pattern' (live test pattern) or an MP4 file")
    parser.add_argument("--check", action="store_true", help="exit 0 if every element needed is installed")
    args = parser.parse_args(argv)
    args.path = args.path or ["/stream"]
    return args


def missing_elements() -> list[str]:
    """Elements this script may use that are not installed (alternatives joined by '|')."""
    needed = ["videotestsrc", "videoconvert", "videoscale", "videorate", "rtph264pay", "rtpbin", "udpsink"]
    needed += ["decodebin", "qtdemux", "avdec_h264|openh264dec", "|".join(ENCODERS)]
    return [names for names in needed if not any(map(Gst.ElementFactory.find, names.split("|")))]


def encoder(gop: int) -> str:
    for name, description in ENCODERS.items():
        if Gst.ElementFactory.find(name) is not None:
            return description.format(gop=gop)
    sys.exit("no H.264 encoder: install gstreamer1.0-plugins-ugly (x264enc) or -bad (openh264enc)")


def launch_line(args: argparse.Namespace) -> str:
    caps = f"video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1"
    if args.source == "pattern":
        raw = f"videotestsrc is-live=true pattern=ball ! {caps} ! videoconvert"
    else:  # a file plays once at its own pace, scaled to the requested size and rate
        raw = f"filesrc location=\"{args.source}\" ! decodebin ! videoconvert ! videoscale ! videorate ! {caps}"
    return f"( {raw} ! {encoder(args.gop or args.fps)} ! rtph264pay name=pay0 pt=96 config-interval=1 )"


def require_login(server: GstRtspServer.RTSPServer, user: str, password: str) -> GstRtspServer.RTSPPermissions:
    """Basic auth for `user`; returns the permissions each factory needs so that user may watch."""
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", user)
    auth = GstRtspServer.RTSPAuth()
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_permission_for_role(user, "media.factory.access", True)
    permissions.add_permission_for_role(user, "media.factory.construct", True)
    return permissions


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    Gst.init(None)
    if args.check:
        missing = missing_elements()
        sys.exit(f"missing GStreamer elements: {' '.join(missing)}" if missing else 0)
    server = GstRtspServer.RTSPServer(address="127.0.0.1", service=str(args.port))
    permissions = require_login(server, args.user, args.password) if args.user else None
    mounts = server.get_mount_points()
    for path in args.path:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(args))
        factory.set_shared(not args.own_playback)  # shared: one encoder per mount, however many clients watch
        if permissions is not None:
            factory.set_permissions(permissions)
        mounts.add_factory(path, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.port}")
    loop = GLib.MainLoop()
    for number in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, number, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()


if __name__ == "__main__":
    main(sys.argv[1:])
