"""Attribute directions in W, labels files, and the editing figures (traverse, grid4, real
stylemix, lods)."""
import json
import os
import re

import numpy as np
import pytest

from test_export import cli, digits, exports, runs  # noqa: F401  (session fixtures)


def _planted(n=3000, dims=16, seed=0):
    rng = np.random.RandomState(seed)
    v = rng.standard_normal(dims)
    v /= np.linalg.norm(v)
    codes = rng.standard_normal((n, dims)) * 2.0 + 5.0  # isotropic around an offset
    target = codes @ v + 0.3 * rng.standard_normal(n) > (5.0 * v).sum()
    return codes.astype(np.float32), target, v


def test_fit_recovers_a_planted_direction():
    from alae_tf.directions import fit, split

    codes, target, v = _planted()
    d = fit("planted", codes, target)
    assert abs(np.linalg.norm(d.vector) - 1) < 1e-5
    assert float(d.vector @ v) > 0.99  # the normal, pointing towards the attribute
    assert d.accuracy > 0.9
    _, test = split(len(codes))
    assert (d.count, d.test_count, d.positives) == (3000, len(test), int(target.sum()))
    np.testing.assert_allclose(d.scale, np.std(codes.astype(np.float64) @ d.vector), rtol=1e-5)
    assert 1.8 < d.scale < 2.2  # the codes' spread along v
    flipped = fit("not planted", codes, ~target)
    assert float(flipped.vector @ v) < -0.99


def test_move_adds_scaled_steps_along_the_vector():
    from alae_tf.directions import Direction

    d = Direction("a", np.array([0.6, 0.8], np.float32), 2.0, 0.9, 10, 2, 5)
    w = np.array([[1.0, 1.0], [0.0, 0.0]], np.float32)
    np.testing.assert_allclose(d.move(w, 1.5), w + 3.0 * d.vector)
    np.testing.assert_allclose(d.move(w, [0.0, -1.0]), [[1.0, 1.0], [-1.2, -1.6]])


def test_directions_save_and_load_round_trip(tmp_path):
    from alae_tf.directions import DIRECTORY, fit, load, save

    codes, target, _ = _planted(n=400)
    d = fit("smile / teeth", codes, target, source="attrs.csv")
    paths = save(str(tmp_path / DIRECTORY), [d])
    assert [os.path.basename(p) for p in paths] == ["smile_teeth.json"]
    got = load(str(tmp_path), latent_size=16)  # a run directory: its directions/
    assert list(got) == ["smile / teeth"]
    np.testing.assert_array_equal(got["smile / teeth"].vector, d.vector)
    assert (got["smile / teeth"].accuracy, got["smile / teeth"].source) == (d.accuracy, "attrs.csv")
    assert load(str(tmp_path / "nothing")) == {}
    with pytest.raises(ValueError, match=r"smile_teeth\.json: a direction of 16 dimensions, the model's codes have 8"):
        load(str(tmp_path), latent_size=8)
    (tmp_path / DIRECTORY / "broken.json").write_text("{")
    with pytest.raises(ValueError, match=r"broken\.json: not a direction file"):
        load(str(tmp_path))


def test_fit_refuses_an_attribute_without_both_values():
    from alae_tf.directions import fit

    codes = np.zeros((50, 4), np.float32)
    with pytest.raises(ValueError, match=r"attribute 'x': 1 of 50 images have it"):
        fit("x", codes, np.arange(50) == 3)


def test_labels_files_by_index_by_name_and_celeba_style(tmp_path):
    from alae_tf.directions import read_labels_file

    p = tmp_path / "by_index.csv"
    p.write_text("index,smiling,young\n2,1,no\n0,-1,yes\n1,true,0\n")
    got = read_labels_file(str(p), 3)
    np.testing.assert_array_equal(got["smiling"], [False, True, True])
    np.testing.assert_array_equal(got["young"], [True, False, False])
    # CelebA's list_attr_celeba.txt: a count line, a header without the key column, spaces
    p = tmp_path / "list_attr.txt"
    p.write_text("3\nSmiling Male\nb.jpg  1 -1\na.jpg -1  1\nc.jpg  1  1\n")
    got = read_labels_file(str(p), 3, names=["a.jpg", "b.jpg", "c.jpg"])
    np.testing.assert_array_equal(got["Smiling"], [False, True, True])
    np.testing.assert_array_equal(got["Male"], [True, False, True])
    got = read_labels_file(str(p), 2, names=["a.jpg", "b.jpg", "c.jpg"])  # the first 2 images only
    np.testing.assert_array_equal(got["Male"], [True, False])


@pytest.mark.parametrize("text, names, message", [
    ("i,a\n0,1\n", None, r"no row for 1 of the 2 images \(first: image 1\)"),
    ("i,a\n0,1\n1,maybe\n", None, r"line 3, column 'a': 'maybe' is not 1/0/-1"),
    ("i,a\n0,1,1\n1,0\n", None, r"line 2: 3 columns, the header has 2"),
    ("f,a\nx.png,1\ny.png,0\n", None, r"line 2: 'x.png' is not an image index, and the dataset records no image names"),
    ("f,a\nx.png,1\nz.png,0\n", ["x.png", "y.png"], r"line 3: no image named 'z.png' in the dataset"),
])
def test_labels_file_errors_name_the_line(tmp_path, text, names, message):
    from alae_tf.directions import read_labels_file

    p = tmp_path / "labels.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_labels_file(str(p), 2, names)


def test_class_transfer_counts_moved_codes_of_other_classes():
    from alae_tf.directions import Direction, class_transfer

    class Identity:  # codes are the images
        def encode(self, x):
            return np.asarray(x, np.float32)

        def decode(self, w):
            return np.asarray(w, np.float32)

    # 2-d codes; class k is predicted where coordinate k is largest
    x = np.array([[1.0, 0.0], [1.0, 0.5], [0.0, 1.0]], np.float32)
    labels = np.array([0, 0, 1])
    dirs = {"zero": Direction("zero", np.array([1.0, 0.0], np.float32), 1.0, 1.0, 3, 1, 2),
            "one": Direction("one", np.array([0.0, 1.0], np.float32), 1.0, 1.0, 3, 1, 1)}
    rates = class_transfer(Identity(), dirs, {0: "zero", 1: "one"}, x, labels,
                           lambda w: np.argmax(w, axis=1), steps=(0.75,))
    # t = 0: none of the 3 moves lands in the other class; t = 0.75: [1, .75] stays 0,
    # [1, 1.25] becomes 1, [.75, 1] stays 1 -> 1 of 3
    assert rates == {0.0: 0.0, 0.75: pytest.approx(1 / 3)}


def test_converter_records_image_names_in_record_order(tmp_path):
    from PIL import Image

    from alae_tf.data import take_images
    from tfrecords_tools.format import read_names
    from tfrecords_tools.writer import convert

    src = tmp_path / "imgs"
    src.mkdir()
    for i, name in enumerate(["c.png", "a.png", "b.png", "d.png"]):
        Image.fromarray(np.full((8, 8), 40 * i + 10, np.uint8)).save(src / name)
    convert(source="images", input=str(src), output_dir=str(tmp_path / "out"), name="x",
            resolution=8, channels=1, shuffle_seed=3)
    names = read_names(str(tmp_path / "out" / "x"))
    assert sorted(names) == ["a.png", "b.png", "c.png", "d.png"]
    values = {"c.png": 10, "a.png": 50, "b.png": 90, "d.png": 130}
    pixels = take_images(str(tmp_path / "out" / "x"), 8, 4)
    assert [int(p[0, 0, 0]) for p in pixels] == [values[n] for n in names]
    m = json.loads((tmp_path / "out" / "x.manifest.json").read_text())
    assert m["names"] == "x.names.txt"
    assert read_names(str(tmp_path / "nothing")) is None


def test_directions_command_on_a_run(runs, digits, tmp_path):
    import shutil

    run = str(tmp_path / "run")
    shutil.copytree(runs["style"], run)
    result = cli("alae_tf.directions", f"--run_dir={run}", f"--data_dir={digits}",
                 "--num_images=200", "--attribute=class_1", "--attribute=class_7",
                 f"--classifier={tmp_path / 'none.keras'}")
    assert result.returncode == 0, result.stderr[-2000:]
    found = sorted(os.listdir(os.path.join(run, "directions")))
    assert found == ["class_1.json", "class_7.json"]
    assert re.search(r"class_1: held-out balanced accuracy [01]\.\d{3} \(40 codes, \d+ of 200 with it\)",
                     result.stdout)
    assert "no class-transfer report" in result.stdout
    from types import SimpleNamespace

    from alae_tf.directions import DEFAULT_C, run_cli

    f = SimpleNamespace(run_dir=run, checkpoint=None, data_dir=digits, attribute=["smiling"],
                        labels=None, num_images=100, seed=0, c=DEFAULT_C, classifier=None)
    with pytest.raises(ValueError, match=r"^--attribute=smiling: not among class_0, class_1, "):
        run_cli(f)
    from tfrecords_tools.writer import convert

    convert(source="mnist5k", output_dir=str(tmp_path), name="plain", resolution=16, channels=1,
            max_images=20, labels=False, workers=1)
    with pytest.raises(ValueError, match=r"^--data_dir=\S+plain has no labels: pass --labels=FILE\.csv"):
        run_cli(SimpleNamespace(**{**vars(f), "data_dir": str(tmp_path / "plain")}))


def test_editing_figures_have_their_documented_sizes(runs, exports, digits):
    from alae_tf.directions import Direction
    from alae_tf.figures import grid4_figure, lods_figure, stylemix_figure, traverse_figure
    from alae_tf.images import to_float, to_uint8
    from alae_tf.inference import Dataset, open_model

    model = open_model(exports["style"])  # 16x16x1, 3 LODs, latent 8, 6 style slots
    images = Dataset(digits, 16, 1).pixels(6)
    v = np.zeros(8, np.float32)
    v[0] = 1
    d = Direction("v", v, 0.5, 1.0, 10, 2, 5)
    fig = traverse_figure(model, images[:2], d, steps=5, extent=2.0)
    assert fig.shape == (2 * 16, 6 * 16, 1)
    np.testing.assert_array_equal(fig[:16, :16], images[0])  # the original first
    w = model.encode(to_float(images[:1]))
    np.testing.assert_array_equal(fig[:16, 48:64], to_uint8(model.decode(w)[0]))  # t = 0 in the middle
    np.testing.assert_array_equal(fig[:16, 80:96], to_uint8(model.decode(w + 1.0 * v)[0]))  # t = +2

    fig = grid4_figure(model, images[:4], steps=3)
    assert fig.shape == (3 * 16, 3 * 16, 1)
    w4 = model.encode(to_float(images[:4]))
    for (r, c), i in {(0, 0): 0, (0, 2): 1, (2, 0): 2, (2, 2): 3}.items():
        np.testing.assert_array_equal(fig[16 * r:16 * r + 16, 16 * c:16 * c + 16],
                                      to_uint8(model.decode(w4[i:i + 1])[0]))
    np.testing.assert_array_equal(fig[16:32, 16:32], to_uint8(model.decode(w4.mean(0, keepdims=True))[0]))

    fig = stylemix_figure(model, sources=2, destinations=1, images=images[:3])
    assert fig.shape == (16 * 3, 16 * 3, 1)  # header row + coarse and middle blocks of 1 row
    np.testing.assert_array_equal(fig[:16, 16:32], images[0])
    np.testing.assert_array_equal(fig[16:32, :16], images[2])
    w3 = model.encode(to_float(images[:3]))
    mixed = np.repeat(w3[2][None, None], model.num_styles, axis=1)
    mixed[:, 4:] = w3[1]  # middle crossover (slots 4..6), second source
    np.testing.assert_array_equal(fig[32:48, 32:48], to_uint8(model.synthesize(mixed))[0])

    fig = lods_figure(model, seed=1, count=2)
    assert fig.shape == (2 * 16, 3 * 16, 1)  # 4, 8 and 16 px, each enlarged to 16
    top = to_uint8(model.synthesize(model.styles(model.latents(1, 2), model.truncation_psi)))
    np.testing.assert_array_equal(fig[16:32, 32:48], top[1])
    low = fig[:16, :16, 0]
    assert (low == np.repeat(np.repeat(low[::4, ::4], 4, 0), 4, 1)).all()  # 4x4 pixels, repeated


def test_traverse_command_needs_a_known_direction(runs, digits, tmp_path):
    from alae_tf.directions import Direction, save

    folder = tmp_path / "dirs"
    save(str(folder), [Direction("up", np.eye(8, dtype=np.float32)[1], 0.5, 1.0, 10, 2, 5)])
    out = tmp_path / "t.png"
    ok = cli("alae_tf.figures", "traverse", f"--model={runs['style']}", f"--directions={folder}",
             "--direction=up", f"--data_dir={digits}", "--count=3", "--steps=4", f"--output={out}")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert f"wrote {out} (80x48)" in ok.stdout
    from types import SimpleNamespace

    from alae_tf.figures import make_figure

    f = SimpleNamespace(model=runs["style"], checkpoint=None, count=2, truncation_psi=None,
                        images=None, data_dir=digits, steps=3, range=4.0, direction="down",
                        directions=str(folder))
    with pytest.raises(ValueError, match=f"^--direction=down: not in {re.escape(str(folder))} \\(up\\)$"):
        make_figure("traverse", f)
