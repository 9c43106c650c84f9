"""Contender 1, the naive loop: bench/throughput.py's single-threaded loop, in a process of its own.

PyAV decode -> `to_ndarray("rgb24")` -> PIL letterbox -> a default `onnxruntime.InferenceSession`
(created before the timed window) -> the model's own output decoding, one frame at a time. One
source only. Live (an rtsp:// URL): frames are read as they come over TCP and nothing is dropped; a
frame's capture time is its place on the stream's clock (`StreamClock`: the first frames' arrival
minus their pts, plus its pts), so a frame that waited in the socket while the loop was busy counts
as waiting.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `python bench/peers/naive_runner.py` from the project root
    sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import onnxruntime  # noqa: E402

from bench.peers.measure import Meter, StreamClock, report, runner_args  # noqa: E402
from bench.throughput import model_bytes, naive_frame  # noqa: E402
from streamer.engine import AutoModel  # noqa: E402

RTSP_OPTIONS = {"rtsp_transport": "tcp"}


def main() -> None:
    args = runner_args(__doc__.splitlines()[0])
    if len(args.sources) != 1:
        sys.exit("the naive loop reads one source")
    onnxruntime.set_default_logger_severity(3)
    model = AutoModel.from_pretrained(args.model)
    session = onnxruntime.InferenceSession(model_bytes(args.model), providers=["CPUExecutionProvider"])
    input_name, meter, clock = session.get_inputs()[0].name, Meter(), StreamClock()
    options = RTSP_OPTIONS if args.live else {}
    meter.start()
    with av.open(args.sources[0], options=options) as container:
        for index, decoded in enumerate(container.decode(video=0), 1):
            captured = clock.captured(time.time(), decoded.time)
            naive_frame(session, input_name, model, decoded, index)
            meter.result(captured if args.live else None)
            if args.live and meter.elapsed() > args.seconds:
                break
    versions = {"onnxruntime": onnxruntime.__version__, "av": av.__version__}
    report(meter.finish(versions=versions, input_shape=[1, 3, model.spec.height, model.spec.width]))


if __name__ == "__main__":
    main()
