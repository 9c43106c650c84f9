"""The GPU path's input side: frames uploaded once and letterboxed on the device.

Everything here is written against the part of NumPy's API that CuPy mirrors, so the same code
runs on CuPy arrays on a GPU and on NumPy arrays on the CPU, where the tests check it against
FFmpeg's scaler. CuPy is imported only when a CUDA device is asked for. Which stream waits for
which is one rule, written down in streams.py.
"""

from .arrays import ArrayDevice, array_device, device_of, is_host_array, module_of, to_host
from .letterbox import DeviceInputBuffers

__all__ = ["ArrayDevice", "DeviceInputBuffers", "array_device", "device_of", "is_host_array", "module_of", "to_host"]
