"""Turn an ONNX model into a PyTorch package (TorchScript or `torch.export`), converted once and cached.

    api.py        the entry points: convert_to_torch, convert_model, copy_package
    cached.py     the cache: keys, the locked conversion, the converted package's model.json
    saving.py     one ONNX file converted: traced or exported, saved, verified against ONNX Runtime
    program.py    the ONNX graph as a torch program that keeps shape arithmetic as Python values
    importer.py   onnx2torch imported (without torchvision where it is missing), the ops it cannot convert

Each module imports only the ones listed below it.
"""

from .api import convert_model, convert_to_torch
from .importer import import_onnx2torch

__all__ = ["convert_model", "convert_to_torch", "import_onnx2torch"]
