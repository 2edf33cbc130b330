"""Image datasets for supernet training and evaluation, without torchvision (no CPU build of it exists here).

A dataset spec is one of
- a folder: an ImageFolder-style tree (`root/<class>/<image>`), decoded with Pillow (ImageNet's train/ and
  val/ trees, prepared the usual way, are such folders);
- `digits:train` / `digits:val`: scikit-learn's handwritten digits (1,797 real 8x8 scans, 10 classes, shipped
  inside the scikit-learn wheel, so nothing is downloaded), written once as PNG trees under the data cache
  (a seeded, stratified 80/20 split) and then read as folders, through the same pipeline as ImageNet;
- `synthetic[:N[:CLASSES]]`: seeded class-conditional images (a fixed smooth pattern per class plus
  noise), learnable, for smoke runs and tests.

Items are `(image, label, skipped)`. A folder dataset indexed by `(index, epoch)` (the trainer's batch
sampler does that) seeds the image's augmentation from (seed, epoch, index). An image that cannot be read is
replaced by the next readable one and counted in `skipped`, with a warning on stderr: a bad file costs one
image, not the run; an unreadable run of MAX_BAD_IN_A_ROW is an error.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from nas.transforms import EvalTransform, Transform

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MAX_BAD_IN_A_ROW = 32
DIGITS_SPLITS = ("train", "val")
DIGITS_VAL_SHARE = 0.2

Key = int | tuple[int, int]  # an index, or (index, epoch) from the trainer's batch sampler


class UnreadableImages(ValueError):
    """Too many unreadable images in a row: not a folder of images."""


def _split_key(key: Key) -> tuple[int, int]:
    return (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), 0)


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

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, int, int]:
        i, _ = _split_key(key)
        y = int(self.labels[i])
        return self.patterns[y] + self.noise[i], y, 0


class ImageFolder(Dataset):
    def __init__(self, root: str | Path, size: int, transform: Transform | None = None, seed: int = 0) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"dataset folder {root} does not exist")
        self.class_names = sorted(d.name for d in root.iterdir() if d.is_dir())
        per_class = [[p for p in sorted((root / name).rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
                     for name in self.class_names]
        if not self.class_names:
            raise ValueError(f"{root}: no class sub-folders (expected {root}/<class>/<image>.jpg)")
        empty = [name for name, files in zip(self.class_names, per_class) if not files]
        if empty:
            raise ValueError(f"{root}: {len(empty)} class folder(s) without images ({', '.join(empty[:3])}); "
                             "remove them or add images")
        self.items = [(p, c) for c, files in enumerate(per_class) for p in files]
        self.root, self.size, self.seed = root, size, seed
        self.transform: Transform = transform or EvalTransform(size)
        self.classes = len(self.class_names)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, int, int]:
        i, epoch = _split_key(key)
        for skipped in range(min(MAX_BAD_IN_A_ROW, len(self.items))):
            j = (i + skipped) % len(self.items)
            path, label = self.items[j]
            try:
                with Image.open(path) as im:
                    image = im.convert("RGB")
            except (OSError, ValueError, Image.DecompressionBombError) as e:  # UnidentifiedImageError is an OSError
                print(f"warning: skipped unreadable image {path} ({type(e).__name__})", file=sys.stderr)
                continue
            return self.transform(image, np.random.default_rng([self.seed, epoch, j])), label, skipped
        raise UnreadableImages(f"{self.root}: {MAX_BAD_IN_A_ROW} unreadable images in a row from "
                               f"{self.items[i][0]}; is it a folder of images?")


def data_cache() -> Path:
    return Path(os.environ.get("MOBILEVIT_NAS_DATA", Path.home() / ".cache" / "mobilevit-nas" / "data"))


def digits_folder(split: str, root: Path | None = None) -> Path:
    """scikit-learn's digits as an ImageFolder tree `root/digits/<split>/<digit>/<index>.png` (written once;
    concurrent writers, e.g. torchrun ranks, each write a private copy and the first rename wins)."""
    if split not in DIGITS_SPLITS:
        raise ValueError(f"digits:{split}: choose one of {['digits:' + s for s in DIGITS_SPLITS]}")
    base = (root or data_cache()) / "digits"
    if not base.is_dir():
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        ids = np.arange(len(digits.target))
        train_ids, val_ids = train_test_split(ids, test_size=DIGITS_VAL_SHARE, stratify=digits.target,
                                              random_state=0)
        base.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=base.parent, prefix=".digits-"))
        for name, chosen in (("train", train_ids), ("val", val_ids)):
            for i in chosen:
                d = tmp / name / str(digits.target[i])
                d.mkdir(parents=True, exist_ok=True)
                pixels = (digits.images[i] * (255 / 16)).round().astype(np.uint8)  # 0..16 grey levels
                Image.fromarray(pixels, mode="L").save(d / f"{i:04d}.png")
        try:
            tmp.rename(base)
        except OSError:  # another process finished first: its copy is the same
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return base / split


def resolve_folder(spec: str) -> str:
    """A spec with its named datasets (`digits:SPLIT`) replaced by their folder; others unchanged."""
    return str(digits_folder(spec.split(":", 1)[1])) if spec.startswith("digits:") else spec


def open_dataset(spec: str, size: int, seed: int = 0, transform: Transform | None = None) -> Dataset:
    """`synthetic[:N[:CLASSES]]`, `digits:train|val` or a folder path; `transform` applies to folder images
    (default: the evaluation transform at `size`)."""
    if spec.startswith("synthetic"):
        parts = spec.split(":")
        n = int(parts[1]) if len(parts) > 1 else 512
        classes = int(parts[2]) if len(parts) > 2 else 10
        return SyntheticImages(n, classes, size, seed)
    return ImageFolder(resolve_folder(spec), size, transform, seed)
