"""The device path on a real GPU (CuPy): marked `gpu`, skipped with the reason elsewhere."""

from __future__ import annotations

import numpy as np

from streamer.engine.preprocess import InputBuffers, InputSpec
from streamer.device import DeviceInputBuffers, array_device, to_host
from streamer.frames import Frame
from tests.engine.gpu import requires_gpu

from .helpers import decoded_frame, image_frame

F32 = np.dtype(np.float32)
ONE_LEVEL = 1 / 255 + 1e-5


@requires_gpu()
def test_gpu_letterbox_when_sources_mix_sizes_and_layouts_matches_ffmpeg_within_one_level():
    frames = [decoded_frame(1920, 1080, 0), decoded_frame(1280, 720, 1, colorspace=1), image_frame(640, 480, 2)]
    frames += [decoded_frame(1920, 1080, 3, pix_fmt="yuvj420p")]
    spec = InputSpec(640, 640, F32)

    expected, _ = InputBuffers(spec, 4).acquire().fill(frames)
    got, _ = DeviceInputBuffers(spec, 4, array_device("cuda")).acquire().fill(frames)

    assert type(got).__module__.startswith("cupy")
    assert np.abs(to_host(got) - expected).max() <= ONE_LEVEL


@requires_gpu("torch")
def test_torch_backend_when_given_a_device_batch_reads_it_in_place_and_answers_on_the_device(tmp_path):
    import cupy
    import torch

    from streamer.engine.backends.torch import TorchBackend

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    path = tmp_path / "tiny.torchscript"
    torch.jit.save(torch.jit.script(net), str(path))
    backend = TorchBackend(path, name="tiny", format="torchscript", device="cuda")
    batch = cupy.random.random((2, 3, 32, 32), dtype=cupy.float32)

    (output,) = backend.run(batch)

    assert backend.input_device == "cuda:0"
    assert isinstance(output, cupy.ndarray)
    with torch.no_grad():
        expected = net(torch.from_numpy(batch.get())).numpy()
    np.testing.assert_allclose(output.get(), expected, atol=1e-4)


@requires_gpu("torch")
def test_yolo_on_torch_cuda_when_batches_are_letterboxed_on_the_gpu_finds_what_the_cpu_finds(
    yolo_path, astronaut, tmp_path
):
    from streamer.engine import AutoModel
    from streamer.engine.convert import convert_to_torch
    from tests.engine.test_centerface import iou

    frames = [astronaut_frame(astronaut, left) for left in (0, 400, 896)]
    cpu = AutoModel.from_pretrained(str(yolo_path))
    package = convert_to_torch(yolo_path, cache_dir=tmp_path)
    for quantization in ("fp32", "fp16"):
        gpu = AutoModel.from_pretrained(str(package), backend="torch", device="cuda", quantization=quantization)

        assert isinstance(gpu.buffers, DeviceInputBuffers)
        for want, got in zip(cpu.detect(frames), gpu.detect(frames)):
            sure = want[want.confidence > 0.5]
            assert len(sure) > 0  # the face, at least
            for box, class_id in zip(sure.xyxy, sure.class_id):
                overlaps = [iou(box, other) for other in got.xyxy]
                assert max(overlaps) > 0.95 and got.class_id[int(np.argmax(overlaps))] == class_id


@requires_gpu("torch")
def test_yolo_on_torch_cuda_when_4_threads_detect_at_once_finds_what_one_thread_finds(yolo_path, astronaut, tmp_path):
    """Input buffers are reused across threads, each on its own stream: no batch may read another's."""
    from concurrent.futures import ThreadPoolExecutor

    from streamer.engine import AutoModel
    from streamer.engine.convert import convert_to_torch

    package = convert_to_torch(yolo_path, cache_dir=tmp_path)
    model = AutoModel.from_pretrained(str(package), backend="torch", device="cuda", batch_size=4)
    batches = [[astronaut_frame(astronaut, 32 * (4 * b + i)) for i in range(4)] for b in range(6)]
    reference = [model.detect(batch) for batch in batches]
    assert all(len(found) for batch in reference for found in batch)  # the face, at least, in each

    def run(seed: int) -> list[int]:
        order = [(seed + k) % len(batches) for k in range(3 * len(batches))]
        return [index for index in order if not _same(model.detect(batches[index]), reference[index])]

    with ThreadPoolExecutor(4) as pool:
        differing = [index for found in pool.map(run, range(4)) for index in found]

    assert differing == []


def _same(got: list, want: list) -> bool:
    return all(
        len(g) == len(w) and np.array_equal(g.class_id, w.class_id) and np.allclose(g.xyxy, w.xyxy, atol=1.0)
        for g, w in zip(got, want)
    )


def astronaut_frame(astronaut: np.ndarray, left: int) -> Frame:
    """A decoded 1080p frame with the photo, doubled, `left` pixels from the left edge."""
    import av

    canvas = np.full((1080, 1920, 3), 90, np.uint8)
    canvas[28:1052, left : left + 1024] = astronaut.repeat(2, axis=0).repeat(2, axis=1)
    decoded = av.VideoFrame.from_ndarray(canvas, format="rgb24").reformat(format="yuv420p")
    return Frame("cam", left, None, 0.0, decoded=decoded)
