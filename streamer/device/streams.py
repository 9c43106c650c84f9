"""Who waits for whom on a GPU: the one stream-ordering rule every device path follows.

CUDA runs the work queued on one stream in order, and work on different streams in any order. The
device path has several: each input buffer letterboxes on a stream of its own (so batches prepared
by several inference workers overlap), torch runs on its current stream, TensorRT on its backend's
stream, ONNX Runtime's CUDA provider on streams of its own, and CuPy code outside any `with stream:`
on the legacy default stream, which does not order against non-blocking streams. Returning from a
call orders nothing on the GPU: work is only queued. So an array written on one stream and read on
another needs an explicit edge, and a buffer may be overwritten only when every reader is done:

1. The writer records. Whoever writes a device array records an event (`record`) on the stream it
   wrote on, after its last write.
2. The reader waits. Whoever reads it makes its own stream wait for that event (`wait`: on the GPU,
   the host goes on) before its first read. Where the reader's stream cannot be named (ONNX
   Runtime's), the host waits for the event instead (`host_wait`) and tells the reader, which is
   what `IOBinding.synchronize_inputs` is for.
3. Hand-offs go through the caller's current stream. Between two functions the one stream both can
   name is the calling thread's current CuPy stream on the owning device (`current_stream`). A
   function that returns a device array returns it ready on that stream (it recorded on its own and
   made that one wait: `hand_off`); a function given a device array reads it after the work queued
   there (it waits for an event recorded there). DLPack keeps the same rule: `torch.from_dlpack(a)`
   has CuPy make torch's stream wait for CuPy's current one, `cupy.from_dlpack(t)` the reverse.
4. A buffer is released only after its last reader. It goes back to its free list once an event
   recorded on its last reader's stream after the last read has passed (`host_wait`): the free list
   holds only buffers anyone may overwrite, on any stream, at once. The thread that releases an
   input buffer needs the model's outputs next, so this wait takes no overlap away. Memory one
   library allocated and another stream still reads follows the same rule through the allocator:
   torch's `Tensor.record_stream(reader)` keeps the block from reuse until the reader got there.

Every device operation runs inside its device's context (`with cupy.cuda.Device(n):`, see
`ArrayDevice.activate` and `device_of`): CuPy allocates on the current device and keeps a current
stream per device, so outside it `cuda:1` work lands on GPU 0. On the host (NumPy) there are no
streams: every helper takes None for a stream and does nothing.
"""

from __future__ import annotations

from typing import Any


def record(stream: Any) -> Any:
    """Rule 1: an event marking the work queued on `stream` (a CuPy stream) so far; None on the host.

    Recorded through the stream itself: CuPy's `Event.record()` without a stream records on the
    legacy stream, whatever stream is current.
    """
    return None if stream is None else stream.record()


def wait(stream: Any, event: Any) -> None:
    """Rule 2: the work queued on `stream` from now on runs after `event` (the host goes on)."""
    if stream is not None and event is not None:
        stream.wait_event(event)


def host_wait(event: Any) -> None:
    """Rules 2 and 4, on the host: block until the GPU has passed `event`."""
    if event is not None:
        event.synchronize()


def hand_off(producer: Any, consumer: Any) -> None:
    """Rule 3: what was queued on `producer` is ready for whatever `consumer` runs next."""
    if producer is None or consumer is None or producer == consumer:
        return
    wait(consumer, record(producer))


def current_stream(array: Any) -> Any:
    """The calling thread's current CuPy stream on `array`'s device; None for a host array."""
    from .arrays import device_of, is_host_array

    if is_host_array(array):
        return None
    import cupy

    with device_of(array):
        return cupy.cuda.get_current_stream()
