"""The metrics against independent numpy definitions, with networks the tests build."""
import numpy as np
import pytest
import tensorflow as tf

from alae_tf.metrics import domain, fid, lpips, ppl, precision_recall, probe


# ---------------------------------------------------------------------------------------- FID
def _closed_form_commuting(mu1, d1, mu2, d2):
    """FD of N(mu1, Q diag(d1) Q^T) and N(mu2, Q diag(d2) Q^T): the matrices commute."""
    return float(np.sum((mu1 - mu2) ** 2) + np.sum(d1 + d2 - 2 * np.sqrt(d1 * d2)))


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    rng = np.random.RandomState(0)
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert fid.frechet_distance(1.5, 4.0, -0.5, 0.25) == pytest.approx(4.0 + (2.0 - 0.5) ** 2, rel=1e-12)
    # diagonal covariances
    mu1, mu2 = rng.randn(6), rng.randn(6)
    d1, d2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    assert fid.frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2)) == pytest.approx(
        _closed_form_commuting(mu1, d1, mu2, d2), rel=1e-10)
    # commuting, non-diagonal covariances (a shared random rotation)
    q, _ = np.linalg.qr(rng.randn(8, 8))
    mu1, mu2 = rng.randn(8), rng.randn(8)
    d1, d2 = rng.uniform(0.1, 3, 8), rng.uniform(0.1, 3, 8)
    got = fid.frechet_distance(mu1, q @ np.diag(d1) @ q.T, mu2, q @ np.diag(d2) @ q.T)
    assert got == pytest.approx(_closed_form_commuting(mu1, d1, mu2, d2), rel=1e-8)


def test_frechet_distance_of_singular_covariances_is_finite_and_close():
    rng = np.random.RandomState(1)
    d1 = np.array([2.0, 0.0, 1.0, 0.0])  # rank-deficient, singular product
    d2 = np.array([0.5, 0.0, 0.0, 3.0])
    mu1, mu2 = rng.randn(4), rng.randn(4)
    got = fid.frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2))
    assert np.isfinite(got)
    assert got == pytest.approx(_closed_form_commuting(mu1, d1, mu2, d2), abs=1e-4)


def test_fid_of_features_uses_float64_statistics():
    rng = np.random.RandomState(2)
    a = rng.randn(400, 5).astype(np.float32)
    b = (rng.randn(400, 5) * 2 + 1).astype(np.float32)
    mu, sigma = fid.statistics(a)
    np.testing.assert_allclose(mu, a.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(a.astype(np.float64), rowvar=False), rtol=1e-12)
    assert fid.fid_of_features(a, a) == pytest.approx(0.0, abs=1e-9)
    # the empirical statistics of b against those of a, through the closed form of scipy-free math
    sa, sb = np.cov(a.astype(np.float64), rowvar=False), np.cov(b.astype(np.float64), rowvar=False)
    vals, vecs = np.linalg.eigh(sa)
    root_a = vecs @ np.diag(np.sqrt(vals)) @ vecs.T
    inner = np.linalg.eigvalsh(root_a @ sb @ root_a)  # tr sqrt(Sa Sb) = sum sqrt eig(Sa^.5 Sb Sa^.5)
    expected = (np.sum((a.mean(0) - b.mean(0)) ** 2, dtype=np.float64)
                + np.trace(sa) + np.trace(sb) - 2 * np.sum(np.sqrt(np.clip(inner, 0, None))))
    assert fid.fid_of_features(a, b) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="mismatched statistics"):
        fid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_cached_features_compute_once_per_network_and_resolution(tmp_path):
    calls = []

    def images():
        calls.append(1)
        return np.linspace(-1, 1, 4 * 8 * 8).reshape(4, 8, 8, 1).astype(np.float32)

    net = fid.FeatureNet("toy", "abc", lambda x: x.reshape(len(x), -1)[:, :3] * 2, batch_size=3)
    data = str(tmp_path / "ds")
    first = fid.cached_features(data, 8, net, 4, images, log=lambda *_: None)
    again = fid.cached_features(data, 8, net, 4, images, log=lambda *_: None)
    np.testing.assert_array_equal(first, images().reshape(4, -1)[:, :3] * 2)
    np.testing.assert_array_equal(again, first)
    assert len(calls) == 2  # one for the cache, one for the expected value above
    assert fid.cache_path(data, 8, net, 4) == f"{data}.toy-abc-r8-n4.npz"
    other = fid.FeatureNet("toy", "def", net.fn)
    fid.cached_features(data, 8, other, 4, images, log=lambda *_: None)
    assert len(calls) == 3


def test_inception_network_loads_a_local_weights_file(tmp_path):
    import keras

    net = keras.applications.InceptionV3(weights=None, include_top=False, pooling="avg",
                                         input_shape=(299, 299, 3))
    path = str(tmp_path / "inception.weights.h5")
    net.save_weights(path)
    feats = fid.inception_network(path, batch_size=2)
    x = np.random.RandomState(0).uniform(-1, 1, (3, 16, 16, 1)).astype(np.float32)
    got = feats(x)
    assert got.shape == (3, 2048) and feats.tag == fid.file_tag(path)
    rgb = tf.image.resize(np.repeat(x, 3, axis=-1), [299, 299], method="bilinear")
    np.testing.assert_allclose(got, net(rgb, training=False).numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"^--inception_weights=/nonexistent.h5: no such file$"):
        fid.inception_network("/nonexistent.h5")


# -------------------------------------------------------------------------------------- LPIPS
def random_lpips_weights(seed: int = 0) -> dict:
    """He-initialised VGG16 convs and positive linear weights in the file layout."""
    rng = np.random.RandomState(seed)
    out, c_in = {}, 3
    for name in lpips.CONVS:
        c_out = 64 * 2 ** min(int(name[5]) - 1, 3)
        out[f"{name}/kernel"] = (rng.randn(3, 3, c_in, c_out) * np.sqrt(2 / (9 * c_in))).astype(np.float32)
        out[f"{name}/bias"] = (rng.randn(c_out) * 0.1).astype(np.float32)
        c_in = c_out
    for i, c in enumerate(lpips.TAP_CHANNELS):
        out[f"lin{i}"] = rng.uniform(0, 1, c).astype(np.float32)
    return out


def _np_conv(x, k, b):
    """3x3 'same' convolution + ReLU, NHWC float64."""
    p = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(p, (3, 3), axis=(1, 2))  # N H W C 3 3
    return np.maximum(np.einsum("nhwcij,ijco->nhwo", win, k) + b, 0)


def _np_lpips(w, a, b):
    def feats(x):
        x = (np.repeat(x, 3, -1) if x.shape[-1] == 1 else x).astype(np.float64)
        x = (x - lpips.SHIFT) / lpips.SCALE
        out = []
        for name in lpips.CONVS:
            if name.endswith("conv1") and name != "block1_conv1":
                n, h, wd, c = x.shape
                x = x.reshape(n, h // 2, 2, wd // 2, 2, c).max(axis=(2, 4))
            x = _np_conv(x, w[f"{name}/kernel"].astype(np.float64), w[f"{name}/bias"])
            if name in lpips.TAPS:
                out.append(x)
        return out

    total = 0
    for i, (fa, fb) in enumerate(zip(feats(a), feats(b))):
        fa = fa / (np.sqrt(np.sum(fa ** 2, -1, keepdims=True)) + 1e-10)
        fb = fb / (np.sqrt(np.sum(fb ** 2, -1, keepdims=True)) + 1e-10)
        total = total + np.mean(np.sum((fa - fb) ** 2 * w[f"lin{i}"], -1), axis=(1, 2))
    return total


@pytest.fixture(scope="module")
def lpips_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("lpips") / "vgg16_lpips.npz")
    np.savez(path, **random_lpips_weights())
    return path


def test_lpips_matches_a_numpy_vgg(lpips_file):
    w = random_lpips_weights()
    lp = lpips.LPIPS.from_file(lpips_file, batch_size=2)
    rng = np.random.RandomState(3)
    for channels in (1, 3):
        a = rng.uniform(-1, 1, (3, 16, 16, channels)).astype(np.float32)
        b = np.clip(a + rng.normal(0, 0.3, a.shape), -1, 1).astype(np.float32)
        got = lp(a, b)
        np.testing.assert_allclose(got, _np_lpips(w, a, b), rtol=2e-4)
        assert np.all(got > 0)
        np.testing.assert_allclose(lp(a, a), 0, atol=1e-6)
        np.testing.assert_allclose(lp(b, a), got, rtol=1e-5)


def test_lpips_weights_file_errors(tmp_path, lpips_file):
    w = random_lpips_weights()
    del w["lin3"]
    missing = str(tmp_path / "missing.npz")
    np.savez(missing, **w)
    with pytest.raises(ValueError, match=rf"^--lpips_weights={missing}: missing array 'lin3'$"):
        lpips.load_weights(missing)
    w = random_lpips_weights()
    w["block2_conv1/kernel"] = w["block2_conv1/kernel"][:, :, :32]
    bad = str(tmp_path / "bad.npz")
    np.savez(bad, **w)
    with pytest.raises(ValueError, match=r"block2_conv1/kernel has shape \(3, 3, 32, 128\), "
                                         r"expected \(3, 3, 64, 128\)$"):
        lpips.load_weights(bad)
    with pytest.raises(ValueError, match=r"^--lpips_weights=/no/such.npz: no such file$"):
        lpips.load_weights("/no/such.npz")
    with pytest.raises(ValueError, match=r"^LPIPS needs --lpips_weights=PATH"):
        lpips.load_weights(None)
    lp = lpips.LPIPS.from_file(lpips_file)
    with pytest.raises(ValueError, match="at least 16x16, got 8x8"):
        lp(np.zeros((1, 8, 8, 1)), np.zeros((1, 8, 8, 1)))


def test_downsample_to_box_filters_larger_images():
    x = np.random.RandomState(0).rand(2, 8, 8, 3).astype(np.float32)
    got = lpips.downsample_to(x, 4)
    np.testing.assert_allclose(got[0, 1, 2], x[0, 2:4, 4:6].mean(axis=(0, 1)), rtol=1e-6)
    assert lpips.downsample_to(x, 8) is x


# ---------------------------------------------------------------------------------------- PPL
def test_slerp_stays_on_the_sphere_and_turns_linearly():
    rng = np.random.RandomState(0)
    a, b = rng.randn(5, 7), rng.randn(5, 7)
    t = rng.uniform(size=(5, 1))
    s = ppl.slerp(a, b, t)
    np.testing.assert_allclose(np.linalg.norm(s, axis=1), np.sqrt(7), rtol=1e-12)
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    angle = lambda u, v: np.arccos(np.clip(np.sum(unit(u) * unit(v), 1), -1, 1))  # noqa: E731
    np.testing.assert_allclose(angle(a, s), t[:, 0] * angle(a, b), rtol=1e-9)
    np.testing.assert_allclose(angle(s, b), (1 - t[:, 0]) * angle(a, b), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ppl.slerp(a, b, np.zeros((5, 1))), unit(a) * np.sqrt(7), rtol=1e-12)


def test_face_crop_and_percentile_filter():
    x = np.arange(16 * 16).reshape(1, 16, 16, 1)
    np.testing.assert_array_equal(ppl.face_crop(x), x[:, 6:14, 4:12])
    rng = np.random.RandomState(0)
    d = np.concatenate([rng.uniform(0, 1, 990), rng.uniform(1e3, 1e4, 6), -rng.uniform(1e3, 1e4, 4)])
    rng.shuffle(d)
    s = np.sort(d)  # 1000 values: keep sorted ranks floor(0.01 * 999) .. ceil(0.99 * 999)
    assert ppl.filtered_mean(d) == pytest.approx(s[9:991].mean(), rel=1e-12)
    assert ppl.filtered_mean(d) < 1.0  # the outliers are gone


def test_path_distances_in_w_lerp_the_mapped_latents():
    """Linear decoder and a squared-L2 'LPIPS': every distance is |A (w_b - w_a)|^2 (eps cancels)."""
    rng = np.random.RandomState(1)
    A = rng.randn(4, 16 * 16).astype(np.float64)
    seen = {"map": [], "decode": []}

    def mapping(z):
        seen["map"].append(z.copy())
        return np.tanh(z)

    def decode(w):
        seen["decode"].append(w.copy())
        return (w.astype(np.float64) @ A).reshape(len(w), 16, 16, 1)

    def sq_l2(a, b):
        return np.sum((a - b) ** 2, axis=(1, 2, 3))

    for sampling in ("full", "end"):
        seen["map"].clear()
        seen["decode"].clear()
        d = ppl.path_distances("w", sampling, 5, 4, sq_l2, mapping=mapping, decode=decode,
                               batch_size=3, seed=7)
        zs = seen["map"]  # per batch: a then b
        wa = np.concatenate([np.tanh(z) for z in zs[0::2]]).astype(np.float64)
        wb = np.concatenate([np.tanh(z) for z in zs[1::2]]).astype(np.float64)
        expected = np.sum(((wb - wa) @ A) ** 2, axis=1)
        assert d.shape == (5,)
        np.testing.assert_allclose(d, expected, rtol=2e-2)  # float32 latents, eps = 1e-4
        if sampling == "end":
            first = seen["decode"][0]
            np.testing.assert_allclose(first[:3], np.tanh(zs[0]), rtol=1e-6)


def test_path_distances_in_z_crop_and_downsample():
    shapes, latents = [], []
    size = [512]

    def generate(z):
        latents.append(z)
        ramp = np.linspace(-1, 1, size[0], dtype=np.float32)[None, :, None, None]
        return np.broadcast_to(ramp * z[:, :1, None, None], (len(z), size[0], size[0], 1))

    def record(a, b):
        shapes.append(a.shape)
        return np.abs(a - b).mean(axis=(1, 2, 3))

    d = ppl.path_distances("z", "end", 2, 6, record, generate=generate, seed=0)
    assert shapes == [(2, 256, 256, 1)]  # 512 -> box-downsampled to 256
    np.testing.assert_allclose(np.linalg.norm(latents[0], axis=1), np.sqrt(6), rtol=1e-5)
    a, b = latents[0][:2].astype(np.float64), latents[0][2:].astype(np.float64)
    ramp = np.linspace(-1, 1, 512).reshape(256, 2).mean(1)
    np.testing.assert_allclose(d, np.abs(ramp).mean() * np.abs(b[:, 0] - a[:, 0]) / 1e-8, rtol=1e-3)
    size[0] = 64
    ppl.path_distances("z", "full", 3, 6, record, generate=generate, crop=True, seed=0)
    assert shapes[1] == (3, 32, 32, 1)  # face crop: rows [24, 56), columns [16, 48)


# ----------------------------------------------------------------------- precision and recall
def _np_pr(real, fake, k=3):
    def radii(x):
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        return np.sort(d, axis=1)[:, k]

    def cov(centres, r, q):
        return np.mean([any(np.linalg.norm(p - c) <= rc for c, rc in zip(centres, r)) for p in q])

    return cov(real, radii(real), fake), cov(fake, radii(fake), real)


def test_precision_recall_matches_brute_force():
    rng = np.random.RandomState(0)
    real = rng.randn(40, 5)
    fake = rng.randn(30, 5) * 0.7 + 1.2
    got = precision_recall.precision_recall(real, fake)
    p, r = _np_pr(real, fake)
    assert got == {"precision": pytest.approx(p), "recall": pytest.approx(r)}
    assert 0 < p < 1 and 0 < r < 1
    same = precision_recall.precision_recall(real, real)
    assert same == {"precision": 1.0, "recall": 1.0}
    far = precision_recall.precision_recall(real, rng.randn(30, 5) + 100)
    assert far == {"precision": 0.0, "recall": 0.0}
    with pytest.raises(ValueError, match="more than k=3 points"):
        precision_recall.precision_recall(real[:3], fake)


# ------------------------------------------------------------------------------------- probes
def test_probe_accuracies_match_numpy_nearest_neighbour_and_separable_svm():
    rng = np.random.RandomState(0)
    tx, ty = rng.randn(60, 4), rng.randint(0, 3, 60)
    vx, vy = rng.randn(25, 4), rng.randint(0, 3, 25)
    nearest = np.argmin(((vx[:, None] - tx[None]) ** 2).sum(-1), axis=1)
    got = probe.accuracies(tx, ty, vx, vy)
    assert got["1nn"] == pytest.approx(np.mean(ty[nearest] == vy))
    # separable: the class is the sign of a linear function, with a margin
    w = rng.randn(6)
    x = rng.randn(400, 6)
    x = x[np.abs(x @ w) > 0.5]
    y = (x @ w > 0).astype(int)
    got = probe.accuracies(x[:200], y[:200], x[200:], y[200:])
    assert got["svm"] == 1.0
    out = probe.latent_probe(tx, tx * 2, ty, vx, vx * 2, vy)
    assert sorted(out) == ["latent_probe/codes/1nn", "latent_probe/codes/svm",
                           "latent_probe/pixels/1nn", "latent_probe/pixels/svm"]
    assert out["latent_probe/pixels/1nn"] == out["latent_probe/codes/1nn"]  # scaling keeps NN
    with pytest.raises(ValueError, match="differ in count"):
        probe.accuracies(tx, ty[:-1], vx, vy)


# ------------------------------------------------------------------------------------- domain
def _bars(n, seed):
    """16x16 images of a bright vertical (class 0) or horizontal (class 1) bar, with noise."""
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    x = rng.normal(-0.8, 0.1, (n, 16, 16, 1))
    for i, c in enumerate(y):
        p = rng.randint(2, 14)
        if c == 0:
            x[i, :, p - 1:p + 2] = 0.9
        else:
            x[i, p - 1:p + 2, :] = 0.9
    return x.astype(np.float32), y


def test_domain_classifier_trains_saves_and_measures(tmp_path):
    x, y = _bars(240, 0)
    tx, ty = _bars(60, 1)
    clf, acc = domain.train_classifier(x, y, tx, ty, epochs=4, batch_size=32)
    assert acc >= 0.9
    assert clf.features(tx).shape == (60, domain.FEATURES)
    path = str(tmp_path / "bars.classifier.keras")
    domain.save_classifier(clf, path)
    loaded = domain.load_classifier(path)
    np.testing.assert_allclose(loaded.features(tx), clf.features(tx), rtol=1e-5, atol=1e-6)
    assert (loaded.resolution, loaded.channels, loaded.num_classes) == (16, 1, 2)
    pred = loaded.predict(tx)
    assert domain.label_preservation(loaded, tx, ty) == pytest.approx(np.mean(pred == ty))
    assert domain.label_preservation(loaded, tx, ty) == pytest.approx(acc)
    hist = domain.class_histogram(loaded, tx)
    assert hist == pytest.approx((np.bincount(pred, minlength=2) / 60).tolist())
    # swapping the bars flips the labels
    assert domain.label_preservation(loaded, tx.transpose(0, 2, 1, 3), 1 - ty) >= 0.9
    with pytest.raises(ValueError, match=r"takes 16x16x1 images, got 8x8x1"):
        loaded.features(np.zeros((1, 8, 8, 1)))
    missing = str(tmp_path / "none.keras")
    with pytest.raises(ValueError, match=rf"^no domain classifier at {missing}: train one with "
                                         r"python -m alae_tf.evaluate --train_classifier"):
        domain.load_classifier(missing)
