"""Image datasets for supernet training, without torchvision (no CPU build of it exists here).

`synthetic`: seeded class-conditional images (a fixed smooth pattern per class plus noise), so a
network can learn them: for smoke runs and tests. `folder`: an ImageFolder-style tree
(`root/<class>/<image>`), decoded with Pillow, resized (shorter side) and centre-cropped.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class SyntheticImages(Dataset):
    def __init__(self, n: int, classes: int, size: int, seed: int = 0, noise: float = 0.5) -> None:
        g = torch.Generator().manual_seed(seed)
        coarse = torch.randn(classes, 3, 8, 8, generator=g)
        self.patterns = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear",
                                                        align_corners=False)
        self.labels = torch.randint(0, classes, (n,), generator=g)
        self.noise = noise * torch.randn(n, 3, size, size, generator=g)
        self.classes = classes

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        y = int(self.labels[i])
        return self.patterns[y] + self.noise[i], y


class ImageFolder(Dataset):
    def __init__(self, root: str | Path, size: int) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"dataset folder {root} does not exist")
        self.class_names = sorted(d.name for d in root.iterdir() if d.is_dir())
        self.items = [(p, c) for c, name in enumerate(self.class_names) for p in sorted((root / name).rglob("*"))
                      if p.suffix.lower() in IMAGE_SUFFIXES]
        if not self.items:
            raise ValueError(f"{root}: no images in class sub-folders (expected {root}/<class>/<image>.jpg)")
        self.size = size
        self.classes = len(self.class_names)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.items[i]
        with Image.open(path) as im:
            im = im.convert("RGB")
            scale = self.size / min(im.size)
            im = im.resize((max(self.size, round(im.width * scale)), max(self.size, round(im.height * scale))),
                           Image.BILINEAR)
            left, top = (im.width - self.size) // 2, (im.height - self.size) // 2
            im = im.crop((left, top, left + self.size, top + self.size))
            x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - MEAN) / STD, label


def open_dataset(spec: str, size: int, seed: int = 0) -> Dataset:
    """`synthetic[:N[:CLASSES]]` or a folder path."""
    if spec.startswith("synthetic"):
        parts = spec.split(":")
        n = int(parts[1]) if len(parts) > 1 else 512
        classes = int(parts[2]) if len(parts) > 2 else 10
        return SyntheticImages(n, classes, size, seed)
    return ImageFolder(spec, size)
