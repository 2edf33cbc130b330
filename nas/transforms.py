"""Image transforms for training and evaluation, on Pillow images (torchvision has no CPU build beside torch here).

Every random choice comes from the `numpy.random.Generator` passed in, which the dataset seeds from (run
seed, epoch, image index): an image's augmentation does not depend on which DataLoader worker or rank
decodes it, so a resumed or re-sharded run sees the same pixels.

`TrainTransform`: random-resized crop, horizontal flip, optionally RandAugment (Cubuk et al. 2020: N ops
drawn uniformly, each at magnitude M of 10; ElasticViT's supernet config, microsoft/Moonlit
ElasticViT/configs/final_3min_space.yaml, uses timm's `rand-n1-m1-mstd0.5-inc1`, flip 0.5 and mixup). `EvalTransform`:
resize the shorter side to size / crop_fraction, centre crop (the usual 0.875 ImageNet protocol).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


@dataclass(frozen=True)
class Augment:
    """Training augmentation; the defaults are the ImageNet recipe of ElasticViT (minus mixup, off by default)."""

    crop_scale_min: float = 0.08  # random-resized crop: the crop's share of the image area is in [min, 1]
    hflip: bool = True
    randaugment_ops: int = 0  # RandAugment's N (0: off; ElasticViT's config: 1)
    randaugment_magnitude: float = 9.0  # RandAugment's M, of 10
    magnitude_std: float = 0.5  # the magnitude is drawn around M with this SD (timm's mstd)

    def __post_init__(self) -> None:
        if not 0 < self.crop_scale_min <= 1:
            raise ValueError(f"--crop-scale-min must be in (0, 1], not {self.crop_scale_min}")
        if self.randaugment_ops < 0 or not 0 <= self.randaugment_magnitude <= 10 or self.magnitude_std < 0:
            raise ValueError("--randaugment-ops must be >= 0 and --randaugment-magnitude in [0, 10]")


def to_tensor(im: Image.Image) -> torch.Tensor:
    """RGB image -> normalised CHW float tensor."""
    x = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - MEAN) / STD


def random_resized_crop(im: Image.Image, size: int, scale_min: float, rng: np.random.Generator,
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Image.Image:
    """A crop of random area share in [scale_min, 1] and aspect ratio in `ratio` (log-uniform), resized to size."""
    w, h = im.size
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        area = w * h * rng.uniform(scale_min, 1.0)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return im.resize((size, size), Image.BILINEAR, box=(left, top, left + cw, top + ch))
    side = min(w, h)  # the draws kept missing (a very elongated image): the central square
    left, top = (w - side) // 2, (h - side) // 2
    return im.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side))


def _affine(im: Image.Image, coeffs: tuple[float, ...]) -> Image.Image:
    return im.transform(im.size, Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=(128, 128, 128))


def _signed(v: float, rng: np.random.Generator) -> float:
    return v if rng.random() < 0.5 else -v


# each op: (image, strength in [0, 1], rng) -> image; the ranges are the RandAugment paper's at strength 1
_OPS: dict[str, Callable[[Image.Image, float, np.random.Generator], Image.Image]] = {
    "identity": lambda im, s, rng: im,
    "autocontrast": lambda im, s, rng: ImageOps.autocontrast(im),
    "equalize": lambda im, s, rng: ImageOps.equalize(im),
    "rotate": lambda im, s, rng: im.rotate(_signed(30 * s, rng), resample=Image.BILINEAR, fillcolor=(128, 128, 128)),
    "solarize": lambda im, s, rng: ImageOps.solarize(im, int(256 - 256 * s)),
    "posterize": lambda im, s, rng: ImageOps.posterize(im, max(1, 8 - int(round(4 * s)))),
    "color": lambda im, s, rng: ImageEnhance.Color(im).enhance(1 + _signed(0.9 * s, rng)),
    "contrast": lambda im, s, rng: ImageEnhance.Contrast(im).enhance(1 + _signed(0.9 * s, rng)),
    "brightness": lambda im, s, rng: ImageEnhance.Brightness(im).enhance(1 + _signed(0.9 * s, rng)),
    "sharpness": lambda im, s, rng: ImageEnhance.Sharpness(im).enhance(1 + _signed(0.9 * s, rng)),
    "shear_x": lambda im, s, rng: _affine(im, (1, _signed(0.3 * s, rng), 0, 0, 1, 0)),
    "shear_y": lambda im, s, rng: _affine(im, (1, 0, 0, _signed(0.3 * s, rng), 1, 0)),
    "translate_x": lambda im, s, rng: _affine(im, (1, 0, _signed(0.45 * s * im.width, rng), 0, 1, 0)),
    "translate_y": lambda im, s, rng: _affine(im, (1, 0, 0, 0, 1, _signed(0.45 * s * im.height, rng))),
}
RANDAUGMENT_OPS = tuple(_OPS)


def apply_op(im: Image.Image, name: str, magnitude: float, rng: np.random.Generator) -> Image.Image:
    """One RandAugment op at `magnitude` of 10."""
    return _OPS[name](im, float(np.clip(magnitude, 0, 10)) / 10, rng)


def randaugment(im: Image.Image, ops: int, magnitude: float, magnitude_std: float,
                rng: np.random.Generator) -> Image.Image:
    for name in rng.choice(RANDAUGMENT_OPS, size=ops):
        im = apply_op(im, str(name), magnitude if magnitude_std == 0 else rng.normal(magnitude, magnitude_std), rng)
    return im


@dataclass(frozen=True)
class TrainTransform:
    size: int
    augment: Augment = Augment()

    def __call__(self, im: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        a = self.augment
        im = random_resized_crop(im.convert("RGB"), self.size, a.crop_scale_min, rng)
        if a.hflip and rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        if a.randaugment_ops:
            im = randaugment(im, a.randaugment_ops, a.randaugment_magnitude, a.magnitude_std, rng)
        return to_tensor(im)


@dataclass(frozen=True)
class EvalTransform:
    size: int
    crop_fraction: float = 0.875

    def __call__(self, im: Image.Image, rng: np.random.Generator | None = None) -> torch.Tensor:
        im = im.convert("RGB")
        short = max(self.size, round(self.size / self.crop_fraction))
        scale = short / min(im.size)
        im = im.resize((max(short, round(im.width * scale)), max(short, round(im.height * scale))), Image.BILINEAR)
        left, top = (im.width - self.size) // 2, (im.height - self.size) // 2
        return to_tensor(im.crop((left, top, left + self.size, top + self.size)))


Transform = Callable[[Image.Image, np.random.Generator], torch.Tensor]
