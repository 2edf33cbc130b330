"""The input pipeline: ImageFolder trees, train/eval transforms, unreadable images, workers, the digits set."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nas.data import ImageFolder, UnreadableImages, digits_folder, open_dataset
from nas.distributed import Ranks
from nas.train import main as train_main
from nas.trainer import TrainSettings, _batches, top1, train
from nas.transforms import (
    RANDAUGMENT_OPS,
    Augment,
    EvalTransform,
    TrainTransform,
    apply_op,
    random_resized_crop,
)


def _folder(root: Path, per_class: int = 3, size: tuple[int, int] = (40, 30), bad: int = 0) -> Path:
    """Two classes of solid colours with a little texture; `bad` junk files named like images in class 'cat'."""
    rng = np.random.default_rng(0)
    for c, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.integers(-40, 40, (size[1], size[0], 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / c / f"{i}.png")
    for i in range(bad):
        (root / "cat" / f"+bad{i}.png").write_bytes(b"not a png")  # sorts before the good ones
    return root


def test_image_folder_reads_classes_and_refuses_empty_ones(tmp_path: Path):
    ds = ImageFolder(_folder(tmp_path / "d"), 32)
    assert ds.class_names == ["cat", "dog"] and len(ds) == 6
    x, y, skipped = ds[4]
    assert x.shape == (3, 32, 32) and y == 1 and skipped == 0 and x[2].mean() > x[0].mean()
    (tmp_path / "d" / "empty").mkdir()
    with pytest.raises(ValueError, match="1 class folder.*without images.*empty"):
        ImageFolder(tmp_path / "d", 32)
    with pytest.raises(ValueError, match="no class sub-folders"):
        ImageFolder(tmp_path / "d" / "cat", 32)


def test_an_unreadable_image_is_replaced_and_counted(tmp_path: Path, capsys):
    ds = ImageFolder(_folder(tmp_path / "d", bad=2), 32)
    assert ds.items[0][0].name == "+bad0.png"
    x, y, skipped = ds[0]
    assert skipped == 2 and y == 0 and x.shape == (3, 32, 32)  # the first readable cat
    assert torch.equal(x, ds[2][0])
    assert capsys.readouterr().err.count("warning: skipped unreadable image") == 2
    junk = tmp_path / "junk" / "a"
    junk.mkdir(parents=True)
    for i in range(3):
        (junk / f"{i}.jpg").write_bytes(b"\xff\xd8 torn")
    with pytest.raises(UnreadableImages, match="unreadable images in a row"):
        ImageFolder(junk.parent, 32)[0]


def test_top1_leaves_unreadable_images_out(small_space, tmp_path: Path):
    from nas.supernet import Supernet

    good = ImageFolder(_folder(tmp_path / "good"), 32)
    with_bad = ImageFolder(_folder(tmp_path / "bad", bad=2), 32)
    net = Supernet(small_space)
    sub = small_space.min_subnet()
    # the same six images; the stand-ins for the two bad files must not be counted a second time
    assert top1(net, sub, with_bad, calibration=good, scale=0.25) == top1(net, sub, good, calibration=good, scale=0.25)


def test_train_augmentation_is_a_function_of_seed_epoch_and_index():
    im = Image.fromarray(np.random.default_rng(1).integers(0, 255, (50, 70, 3)).astype(np.uint8))
    t = TrainTransform(32, Augment(randaugment_ops=2))
    a, b = t(im, np.random.default_rng([0, 0, 5])), t(im, np.random.default_rng([0, 0, 5]))
    c = t(im, np.random.default_rng([0, 1, 5]))
    assert a.shape == (3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    # with the whole image, no flip and no RandAugment the train transform is a plain resize
    plain = TrainTransform(32, Augment(crop_scale_min=1.0, hflip=False))
    sq = im.resize((50, 50))
    whole = random_resized_crop(sq, 32, 1.0, np.random.default_rng(0), ratio=(1.0, 1.0))
    assert np.array_equal(np.asarray(whole), np.asarray(sq.resize((32, 32), Image.BILINEAR)))
    assert plain(sq, np.random.default_rng(0)).shape == (3, 32, 32)
    assert EvalTransform(32)(im).shape == (3, 32, 32)
    with pytest.raises(ValueError, match="crop-scale-min"):
        Augment(crop_scale_min=0)


@pytest.mark.parametrize("op", RANDAUGMENT_OPS)
def test_every_randaugment_op_keeps_the_image_size(op: str):
    im = Image.fromarray(np.random.default_rng(2).integers(0, 255, (24, 24, 3)).astype(np.uint8))
    out = apply_op(im, op, 10.0, np.random.default_rng(0))
    assert out.size == im.size and out.mode == "RGB"
    if op not in ("identity", "autocontrast", "equalize"):  # these may leave a random image as it is
        assert not np.array_equal(np.asarray(out), np.asarray(im))


@pytest.mark.slow
def test_worker_processes_load_the_same_batches(tmp_path: Path):
    data = ImageFolder(_folder(tmp_path / "d", per_class=4), 32, TrainTransform(32, Augment(randaugment_ops=1)))
    ranks = Ranks()
    inline, workers = _batches(data, 4, 7, 0, ranks, workers=0), _batches(data, 4, 7, 0, ranks, workers=2)
    for _ in range(3):  # crosses an epoch: 8 images, batches of 4
        (x0, y0, s0), (x1, y1, s1) = next(inline), next(workers)
        assert torch.equal(x0, x1) and torch.equal(y0, y1) and torch.equal(s0, s1)


@pytest.mark.slow
def test_training_counts_skipped_images_with_mixup_amp_and_a_resolution_scale(small_space, tmp_path: Path):
    data = ImageFolder(_folder(tmp_path / "d", bad=1), 32, TrainTransform(32))
    settings = TrainSettings(steps=2, batch_size=4, subnets_per_step=0, sampler="uniform", mixup=0.2, amp=True,
                             resolution_scale=0.25, workers=0)
    _, log = train(small_space, data, settings)
    assert len(log.ce_max) == 2 and all(np.isfinite(log.ce_max)) and len(log.seconds) == 2
    assert log.skipped_images >= 1  # 7 files, 8 images drawn: the bad one is met at least once
    with pytest.raises(ValueError, match="resolution-scale"):
        TrainSettings(resolution_scale=0)


def test_the_digits_set_is_a_real_stratified_split(tmp_path: Path):
    train_dir, val_dir = digits_folder("train", tmp_path), digits_folder("val", tmp_path)
    counts = [len(list((train_dir / str(d)).iterdir())) for d in range(10)]
    n_val = sum(len(list((val_dir / str(d)).iterdir())) for d in range(10))
    assert sum(counts) + n_val == 1797 and n_val == 360 and min(counts) >= 135
    with Image.open(next((train_dir / "3").iterdir())) as im:
        assert im.size == (8, 8)
    assert digits_folder("train", tmp_path) == train_dir  # written once
    with pytest.raises(ValueError, match="digits:train"):
        digits_folder("test", tmp_path)


def test_cli_reports_a_folder_of_junk_in_one_line(tmp_path: Path, capsys):
    junk = tmp_path / "junk" / "a"
    junk.mkdir(parents=True)
    for i in range(40):
        (junk / f"{i}.png").write_bytes(b"junk")
    (tmp_path / "junk" / "b").mkdir()
    (tmp_path / "junk" / "b" / "0.png").write_bytes(b"junk")
    code = train_main(["--data", str(tmp_path / "junk"), "--steps", "1", "--batch-size", "4", "--workers", "1",
                       "--resolution-scale", "0.25", "--eval"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and "unreadable images in a row" in err[-1], err
    assert all(line.startswith("warning: skipped") for line in err[:-1])


def test_open_dataset_forms(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MOBILEVIT_NAS_DATA", str(tmp_path / "cache"))
    ds = open_dataset("digits:val", 32)
    assert len(ds) == 360 and ds.classes == 10 and ds[0][0].shape == (3, 32, 32)
    assert open_dataset("synthetic:8:2", 32)[(3, 1)][2] == 0


@pytest.mark.gpu
def test_a_mixed_precision_step_on_cuda(small_space, tmp_path: Path):
    data = ImageFolder(_folder(tmp_path / "d"), 32, TrainTransform(32))
    settings = TrainSettings(steps=2, batch_size=4, subnets_per_step=1, sampler="uniform", amp=True,
                             resolution_scale=0.25, workers=0, device="cuda")
    net, log = train(small_space, data, settings)
    assert next(net.parameters()).is_cuda and all(np.isfinite(log.ce_max))
