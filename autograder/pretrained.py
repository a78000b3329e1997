"""Student-safe pre-trained weights: the course's digit backbone, and torchvision's ImageNet
ResNet-18 where its weights file is already on disk. Nothing here ever downloads.

Imports nothing of the project (notebooks, checks and `reference` all use it).

- `load_digit_backbone()`: the state_dict of the small CNN that the course pre-trained on the
  digits 0-4 of the embedded MNIST-5k (lab `transfer`). The file, `weights/digits_0to4.pt`,
  ships with the package; `python -m reference.transfer` regenerates it.
- `load_imagenet_resnet18()`: torchvision's ResNet-18 with its ImageNet weights, read from the
  torch.hub cache (`$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth`), or None when the file
  is not there.

About the hash in the file name: torchvision builds ResNet-18 with `check_hash=True`, but
`torch.hub.load_state_dict_from_url` (torch 2.14, torchvision 0.29) compares the hash prefix
only while *downloading*; a file already in the cache is loaded as it is, whatever its
contents. This loader reads that same file, without pickled code (`weights_only=True`), and
never falls back to a download.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

__all__ = ["WEIGHTS_DIR", "DIGIT_BACKBONE_FILE", "load_digit_backbone", "imagenet_resnet18_file",
           "load_imagenet_resnet18"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DIGIT_BACKBONE_FILE = WEIGHTS_DIR / "digits_0to4.pt"


def load_digit_backbone(path: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The state_dict of the course's digit backbone (lab transfer's `DigitCNN(num_classes=5)`),
    pre-trained on the digits 0-4 of `autograder.data.mnist_splits()["train"]`; CPU tensors.

    `path`: another weights file of the same layout (default: the one shipped with the course).
    """
    path = Path(path) if path is not None else DIGIT_BACKBONE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no digit backbone weights here — regenerate them with "
                                f"`python -m reference.transfer`")
    return torch.load(path, map_location="cpu", weights_only=True)


def imagenet_resnet18_file() -> Path:
    """Where torchvision looks for ResNet-18's ImageNet weights: `<torch.hub.get_dir()>/checkpoints/`
    `resnet18-f37072fd.pth` (`$TORCH_HOME/hub/...`, by default `~/.cache/torch/hub/...`)."""
    from torchvision.models import ResNet18_Weights

    name = os.path.basename(urlparse(ResNet18_Weights.IMAGENET1K_V1.url).path)  # resnet18-f37072fd.pth
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def load_imagenet_resnet18(required: bool = False) -> nn.Module | None:
    """torchvision's ResNet-18 (1000 ImageNet classes) with the ImageNet weights found on disk.

    Returns None when the weights file is absent (`required=True`: raise FileNotFoundError
    naming the path instead). Never downloads. The model is on the CPU, in eval mode.
    """
    from torchvision.models import resnet18

    path = imagenet_resnet18_file()
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path}: no ImageNet ResNet-18 weights here — copy torchvision's "
                                    f"{path.name} into that folder (this course never downloads)")
        return None
    model = resnet18()  # random weights, the ImageNet layout: fc is Linear(512, 1000)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))  # strict: every key
    return model.eval()
