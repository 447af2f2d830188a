"""Figures (samples, reconstructions, interpolation, style mixing) from a run or a SavedModel."""
import os
import re
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from test_export import cli, digits, exports, runs  # noqa: F401  (session fixtures)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Images of other sizes and modes than the model's (RGB 40x30, RGBA 64x64, L 20x20)."""
    d = tmp_path_factory.mktemp("figure_images")
    rng = np.random.RandomState(0)
    Image.fromarray(rng.randint(0, 256, (40, 30, 3), np.uint8)).save(d / "a.png")
    Image.fromarray(rng.randint(0, 256, (64, 64, 4), np.uint8), "RGBA").save(d / "b.png")
    Image.fromarray(rng.randint(0, 256, (20, 20), np.uint8)).save(d / "c.jpg")
    (d / "notes.txt").write_text("not an image")
    return str(d)


def _flags(model, **kw):
    base = dict(model=model, checkpoint=None, seed=0, count=4, truncation_psi=None, images=None,
                data_dir=None, steps=5, sources=3, destinations=2)
    return SimpleNamespace(**{**base, **kw})


def _png(path):
    with Image.open(path) as im:
        return np.asarray(im)


def test_every_figure_command_writes_its_png(runs, exports, digits, folder, tmp_path):
    commands = [
        ("generate", exports["style"], ["--count=6", "--seed=3", "--truncation_psi=0.7"], (32, 48)),
        ("reconstruct", runs["style"], [f"--images={folder}"], (16, 96)),
        ("interpolate", exports["mlp"], [f"--data_dir={digits}", "--steps=4"], (16, 96)),
        ("stylemix", exports["style"], ["--sources=3", "--destinations=2"], (16 * 5, 16 * 4)),
    ]
    for kind, model, extra, shape in commands:
        out = tmp_path / f"{kind}.png"
        result = cli("alae_tf.figures", kind, f"--model={model}", f"--output={out}", *extra)
        assert result.returncode == 0, (kind, result.stderr[-2000:])
        assert f"wrote {out}" in result.stdout
        assert _png(out).shape == shape, kind


@pytest.mark.parametrize("kind", ["mlp", "style"])
def test_run_and_its_saved_model_open_as_the_same_model(kind, runs, exports):
    from alae_tf.inference import open_model

    a, b = open_model(runs[kind]), open_model(exports[kind])
    fields = ("name", "resolution", "channels", "latent_size", "num_styles", "truncation_psi",
              "truncation_cutoff", "has_encoder", "has_mapping", "has_styles")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
    assert (a.name, a.kind, a.step > 0) == (f"alae_{kind}", f"alae_{kind}", True)
    assert (b.kind, b.step) == ("saved_model", 0)
    rng = np.random.RandomState(0)
    z, x = a.latents(1, 3), rng.uniform(-1, 1, (3, 16, 16, 1)).astype(np.float32)
    pairs = [(m.generate(z), m.generate(z, 0.5), m.map(z), m.encode(x), m.reconstruct(x),
              m.synthesize(m.styles(z, 0.7))) for m in (a, b)]
    for got, want in zip(*pairs):
        np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(a.decode(a.map(z)), a.generate(z), atol=1e-5)  # psi None: no truncation


def test_reconstruction_figure_puts_originals_beside_reconstructions(exports, digits):
    from alae_tf.data import take_images
    from alae_tf.figures import reconstruction_figure
    from alae_tf.inference import open_model

    model = open_model(exports["mlp"])
    images = take_images(digits, 16, 3)
    fig = reconstruction_figure(model, images)
    assert fig.shape == (16, 6 * 16, 1)
    for i in range(3):
        np.testing.assert_array_equal(fig[:, 32 * i:32 * i + 16], images[i])


def test_truncation_psi_zero_gives_the_average_image(exports):
    from alae_tf.figures import samples_figure
    from alae_tf.inference import open_model

    model = open_model(exports["mlp"])  # one style slot, cutoff covers it
    fig = samples_figure(model, seed=1, count=4, psi=0.0, columns=4)
    tiles = fig.reshape(16, 4, 16, 1).transpose(1, 0, 2, 3)
    assert all(np.abs(t.astype(int) - tiles[0].astype(int)).max() <= 1 for t in tiles)


def test_stylemix_grid_copies_the_source_styles(exports):
    from alae_tf.figures import crossovers, stylemix_figure
    from alae_tf.images import to_uint8
    from alae_tf.inference import open_model

    model = open_model(exports["style"])
    assert crossovers(6) == [("coarse", 0, 4), ("middle", 4, 6)]
    assert crossovers(18) == [("coarse", 0, 4), ("middle", 4, 8), ("fine", 8, 18)]
    fig = stylemix_figure(model, seed=5, sources=2, destinations=1)
    assert fig.shape == (16 * 3, 16 * 3, 1)
    styles = model.styles(model.latents(5, 3), model.truncation_psi)
    src, dst = styles[:2], styles[2:]
    np.testing.assert_array_equal(fig[:16, :16], 255)  # blank corner
    np.testing.assert_array_equal(fig[:16, 16:32], to_uint8(model.synthesize(src[:1]))[0])
    np.testing.assert_array_equal(fig[16:32, :16], to_uint8(model.synthesize(dst))[0])
    mixed = dst.copy()
    mixed[:, 0:4] = src[1:2, 0:4]  # coarse row, second source
    np.testing.assert_array_equal(fig[16:32, 32:48], to_uint8(model.synthesize(mixed))[0])


def test_figure_cli_error_is_one_line(exports, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "bad.png").write_bytes(b"not a png")
    result = cli("alae_tf.figures", "reconstruct", f"--model={exports['mlp']}", f"--images={bad}",
                 f"--output={tmp_path / 'x.png'}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert re.match(r"^error: \S+bad\.png: unreadable or corrupt image", last), last
    assert not os.path.exists(tmp_path / "x.png")


def test_figure_errors(exports, folder, tmp_path, capsys):
    from alae_tf.figures import main, make_figure

    with pytest.raises(ValueError, match=r"^stylemix needs the style model: the MLP model has a single"):
        make_figure("stylemix", _flags(exports["mlp"]))
    with pytest.raises(ValueError, match=r"is not a run directory"):
        make_figure("generate", _flags(str(tmp_path)))
    with pytest.raises(ValueError, match=r"^pass exactly one of --images"):
        make_figure("reconstruct", _flags(exports["mlp"]))
    with pytest.raises(ValueError, match=r"has no .png/.jpg"):
        make_figure("interpolate", _flags(exports["mlp"], images=str(tmp_path)))
    with pytest.raises(SystemExit) as e:
        main(["figures", "sideways"])
    assert e.value.code == 1
    assert capsys.readouterr().err.startswith("error: give one figure kind: generate | ")


@pytest.mark.parametrize("n, shape", [(36, (6, 6)), (32, (4, 8)), (16, (4, 4)), (6, (2, 3)),
                                      (12, (3, 4)), (7, (3, 3))])
def test_default_grid_fills_every_row_when_it_can(n, shape):
    from alae_tf.images import grid

    images = np.arange(1, n + 1, dtype=np.uint8).reshape(n, 1, 1, 1)
    tiled = grid(images)[..., 0]
    assert tiled.shape == shape
    filled = tiled[tiled > 0]
    np.testing.assert_array_equal(filled, np.arange(1, n + 1))  # row-major, nothing dropped
    assert (tiled == 0).sum() == shape[0] * shape[1] - n  # empty only where no near-square rectangle holds n


def test_pixel_conversions_round_trip():
    import tensorflow as tf

    from alae_tf.images import to_float, to_uint8

    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    x = to_float(pixels)
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and (x.min(), x.max()) == (-1.0, 1.0)
    np.testing.assert_array_equal(x, pixels.astype(np.float32) / 127.5 - 1)
    np.testing.assert_array_equal(to_uint8(x), pixels)
    traced = tf.function(lambda p: to_uint8(to_float(p)))(tf.constant(pixels))
    assert isinstance(traced, tf.Tensor)
    np.testing.assert_array_equal(traced.numpy(), pixels)
    # clipped outside [-1, 1]; 127.5 rounds to even as numpy's rint
    np.testing.assert_array_equal(to_uint8(np.array([-2.0, 2.0, 0.0], np.float32)), [0, 255, 128])
