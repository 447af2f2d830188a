"""Tests of alae_tf.layers against independent numpy computations of each layer's definition."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from alae_tf import layers as L

RNG = np.random.default_rng(1234)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# --------------------------------------------------------------------------- numpy references


def np_lrelu(x):
    return np.where(x >= 0, x, 0.2 * x)


def np_conv_same(x, w):
    """Cross-correlation, stride 1, TF 'same' zero padding. x (N,H,W,C), w (kh,kw,C,O)."""
    n, h, wd, _ = x.shape
    kh, kw = w.shape[:2]
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    xp = np.pad(x, [(0, 0), (ph, kh - 1 - ph), (pw, kw - 1 - pw), (0, 0)])
    out = np.zeros((n, h, wd, w.shape[3]), np.float64)
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nhwc,co->nhwo", xp[:, i : i + h, j : j + wd, :], w[i, j])
    return out


def np_up(x, f=2):
    return x.repeat(f, axis=1).repeat(f, axis=2)


def np_avgpool(x, f=2):
    n, h, w, c = x.shape
    return x.reshape(n, h // f, f, w // f, f, c).mean(axis=(2, 4))


def np_instance_stats(x):
    mean = x.mean(axis=(1, 2))
    var = ((x - mean[:, None, None, :]) ** 2).mean(axis=(1, 2))
    return mean, var


def built(layer, *shapes):
    layer.build(shapes[0] if len(shapes) == 1 else list(shapes))
    return layer


def randomize(layer_or_model, scale=0.5):
    """Give every weight a random non-trivial value (zero-initialised ones included)."""
    for v in layer_or_model.weights:
        v.assign(randn(*v.shape) * scale)


# --------------------------------------------------------------------------- equalized dense


def test_lrelu():
    x = randn(5, 7)
    np.testing.assert_allclose(L.lrelu(tf.constant(x)).numpy(), np_lrelu(x), rtol=1e-6)


@pytest.mark.parametrize("lr_multiplier,activation,gain", [(1.0, None, math.sqrt(2)), (0.1, "lrelu", 1.0)])
def test_equalized_dense_matches_numpy(lr_multiplier, activation, gain):
    layer = built(L.EqualizedDense(6, gain=gain, lr_multiplier=lr_multiplier, activation=activation), (None, 5))
    randomize(layer)
    x = randn(4, 3, 5)  # works on the last axis of a rank-3 input
    kernel, bias = layer.get_weights()
    c = gain / math.sqrt(5) * lr_multiplier
    expected = np.einsum("nti,io->nto", x, kernel * c) + bias * lr_multiplier
    if activation == "lrelu":
        expected = np_lrelu(expected)
    np.testing.assert_allclose(layer(x).numpy(), expected, atol=1e-5)


def test_equalized_dense_bias_init_and_no_bias():
    layer = built(L.EqualizedDense(3, lr_multiplier=0.1, bias_init=1.0), (None, 4))
    np.testing.assert_allclose(layer.bias.numpy(), np.full(3, 10.0))  # stored = init / lrmul
    np.testing.assert_allclose(layer(np.zeros((2, 4), np.float32)).numpy(), np.ones((2, 3)), atol=1e-6)
    assert len(built(L.EqualizedDense(3, use_bias=False), (None, 4)).weights) == 1
    with pytest.raises(ValueError, match="activation"):
        L.EqualizedDense(3, activation="relu")


@pytest.mark.parametrize("lr_multiplier", [1.0, 0.1])
def test_equalized_dense_stored_std(lr_multiplier):
    layer = built(L.EqualizedDense(512, lr_multiplier=lr_multiplier), (None, 512))
    std = layer.kernel.numpy().std()
    assert abs(std * lr_multiplier - 1.0) < 0.02


@pytest.mark.parametrize("lr_multiplier", [1.0, 0.01])
def test_equalized_dense_output_variance(lr_multiplier):
    """Linear, gain 1: unit-variance input gives unit-variance output, whatever lr_multiplier."""
    layer = built(L.EqualizedDense(512, gain=1.0, lr_multiplier=lr_multiplier), (None, 1024))
    y = layer(randn(256, 1024)).numpy()
    assert abs(y.var() - 1.0) < 0.06


def test_equalized_dense_effective_learning_rate():
    """SGD on stored weights moves effective weights by lr * c^2 * grad, bias by lr * lrmul^2 * grad."""
    lrmul, gain, lr, fan_in, units = 0.1, math.sqrt(2), 0.05, 6, 4
    layer = built(L.EqualizedDense(units, gain=gain, lr_multiplier=lrmul), (None, fan_in))
    randomize(layer)
    x, r = randn(8, fan_in), randn(8, units)
    c = gain / math.sqrt(fan_in) * lrmul
    k0, b0 = layer.get_weights()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) * r)  # linear: dL/dW_eff = x^T r, dL/db_eff = sum r
    grads = tape.gradient(loss, layer.trainable_variables)
    keras.optimizers.SGD(learning_rate=lr).apply_gradients(zip(grads, layer.trainable_variables))
    k1, b1 = layer.get_weights()
    np.testing.assert_allclose((k1 - k0) * c, -lr * c**2 * (x.T @ r), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose((b1 - b0) * lrmul, -lr * lrmul**2 * r.sum(0), rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- equalized conv


@pytest.mark.parametrize("mode", ["plain", "up", "down"])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("kernel_size", [1, 3])
def test_equalized_conv_matches_numpy(mode, fused, kernel_size):
    lrmul = 0.5
    layer = L.EqualizedConv2D(
        5, kernel_size, lr_multiplier=lrmul, up=mode == "up", down=mode == "down", fused=fused, activation="lrelu"
    )
    built(layer, (None, 6, 6, 3))
    randomize(layer)
    x = randn(2, 6, 6, 3)
    kernel, bias = layer.get_weights()
    c = math.sqrt(2) / math.sqrt(kernel_size * kernel_size * 3) * lrmul
    xin = np_up(x) if mode == "up" else x
    expected = np_conv_same(xin, kernel * c)
    if mode == "down":
        expected = np_avgpool(expected)
    expected = np_lrelu(expected + bias * lrmul)
    y = layer(x).numpy()
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, atol=2e-5)


@pytest.mark.parametrize("mode", ["up", "down"])
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_fused_equals_unfused(mode, kernel_size):
    kw = dict(up=mode == "up", down=mode == "down")
    fused = built(L.EqualizedConv2D(4, kernel_size, fused=True, **kw), (None, 8, 8, 3))
    plain = built(L.EqualizedConv2D(4, kernel_size, fused=False, **kw), (None, 8, 8, 3))
    randomize(fused)
    plain.set_weights(fused.get_weights())
    x = randn(3, 8, 8, 3)
    np.testing.assert_allclose(fused(x).numpy(), plain(x).numpy(), atol=1e-5)


def test_equalized_conv_stored_std_and_errors():
    layer = built(L.EqualizedConv2D(64, 3, lr_multiplier=0.5), (None, 4, 4, 64))
    assert abs(layer.kernel.numpy().std() * 0.5 - 1.0) < 0.03
    with pytest.raises(ValueError, match="up=True and down=True"):
        L.EqualizedConv2D(4, 3, up=True, down=True)
    with pytest.raises(ValueError, match="odd kernel_size"):
        L.EqualizedConv2D(4, 2, up=True, fused=True)
    L.EqualizedConv2D(4, 2, up=True, fused=False)  # unfused even kernels are fine


def test_equalized_conv_dynamic_batch_in_tf_function():
    layer = built(L.EqualizedConv2D(4, 3, up=True), (None, 4, 4, 2))
    fn = tf.function(layer, input_signature=[tf.TensorSpec([None, 4, 4, 2], tf.float32)])
    x = randn(3, 4, 4, 2)
    out = fn(x)
    assert out.shape == (3, 8, 8, 4)
    np.testing.assert_allclose(out.numpy(), layer(x).numpy(), atol=1e-6)


# --------------------------------------------------------------------------- simple layers


def test_bias():
    layer = built(L.Bias(lr_multiplier=0.1), (None, 3, 3, 4))
    np.testing.assert_array_equal(layer.bias.numpy(), np.zeros(4))
    randomize(layer)
    x = randn(2, 3, 3, 4)
    np.testing.assert_allclose(layer(x).numpy(), x + layer.bias.numpy() * 0.1, atol=1e-6)


def test_pixel_norm():
    x = randn(4, 3, 3, 8) * 3.0
    expected = x / np.sqrt((x**2).mean(axis=-1, keepdims=True) + 1e-8)
    np.testing.assert_allclose(L.PixelNorm()(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    z = randn(5, 16)
    np.testing.assert_allclose(L.PixelNorm()(z).numpy(), z / np.sqrt((z**2).mean(-1, keepdims=True) + 1e-8), rtol=1e-5)


def np_minibatch_stddev(x, group_size, num_new_features):
    """Sample n belongs to group n % M (M = N / G); features are contiguous channel blocks."""
    n, h, w, c = x.shape
    g = min(group_size, n)
    m = n // g
    f = num_new_features
    out = np.zeros((n, h, w, f))
    for j in range(m):
        members = x[j::m].astype(np.float64)  # (G, H, W, C)
        std = np.sqrt(members.var(axis=0) + 1e-8)  # (H, W, C)
        for k in range(f):
            out[j::m, :, :, k] = std[:, :, k * (c // f) : (k + 1) * (c // f)].mean()
    return np.concatenate([x, out], axis=-1)


@pytest.mark.parametrize("n,group_size,num_new_features", [(8, 4, 1), (8, 4, 2), (2, 4, 1), (6, 2, 3)])
def test_minibatch_stddev(n, group_size, num_new_features):
    x = randn(n, 3, 3, 6) * np.arange(1, n + 1, dtype=np.float32)[:, None, None, None]
    y = L.MinibatchStdDev(group_size, num_new_features)(x).numpy()
    assert y.shape == (n, 3, 3, 6 + num_new_features)
    np.testing.assert_allclose(y, np_minibatch_stddev(x, group_size, num_new_features), rtol=1e-5, atol=1e-5)


def test_minibatch_stddev_errors():
    with pytest.raises(ValueError, match="not divisible"):
        L.MinibatchStdDev(4)(randn(6, 2, 2, 3))
    with pytest.raises(ValueError, match="num_new_features"):
        L.MinibatchStdDev(4, 2)(randn(4, 2, 2, 3))


def test_instance_norm():
    x = randn(3, 5, 5, 4) * 2.0 + 1.5
    y, stats = L.InstanceNorm(return_stats=True)(x)
    y = y.numpy()
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(axis=(1, 2)), 1.0, atol=1e-4)
    mean, var = np_instance_stats(x.astype(np.float64))
    np.testing.assert_allclose(y, (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-8), atol=1e-5)
    assert stats.shape == (3, 8)
    np.testing.assert_allclose(stats.numpy(), np.concatenate([mean, np.sqrt(var + 1e-8)], -1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(L.InstanceNorm()(x).numpy(), y, atol=1e-6)


def test_instance_norm_gradient_finite_on_constant_input():
    x = tf.ones([2, 4, 4, 3])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y, stats = L.InstanceNorm(return_stats=True)(x)
        loss = tf.reduce_sum(y) + tf.reduce_sum(stats)
    assert np.all(np.isfinite(tape.gradient(loss, x).numpy()))


def test_style_mod():
    layer = L.StyleMod()
    built(layer, (None, 4, 4, 3), (None, 7))
    randomize(layer)
    x, w = randn(2, 4, 4, 3), randn(2, 7)
    kernel, bias = layer.affine.get_weights()
    assert kernel.shape == (7, 6)
    style = w @ (kernel / math.sqrt(7)) + bias  # gain 1, lr multiplier 1
    expected = x * (1 + style[:, None, None, :3]) + style[:, None, None, 3:]
    np.testing.assert_allclose(layer([x, w]).numpy(), expected, atol=1e-5)


def test_noise_injection():
    layer = L.NoiseInjection()
    x = randn(2, 4, 4, 3)
    np.testing.assert_array_equal(layer(x).numpy(), x)  # weight init 0: identity
    randomize(layer)
    noise = randn(2, 4, 4, 1)
    np.testing.assert_allclose(layer(x, noise=noise).numpy(), x + layer.weight.numpy() * noise, atol=1e-6)
    a, b = layer(x).numpy(), layer(x).numpy()
    assert a.shape == x.shape and not np.allclose(a, b)  # fresh noise per call


def test_blur():
    x = randn(2, 5, 6, 3)
    k = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
    xp = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    expected = sum(k[i, j] * xp[:, i : i + 5, j : j + 6, :] for i in range(3) for j in range(3))
    np.testing.assert_allclose(L.Blur()(x).numpy(), expected, atol=1e-6)


def test_upscale_downscale():
    x = randn(2, 3, 4, 2)
    np.testing.assert_array_equal(L.Upscale2D()(x).numpy(), np_up(x))
    np.testing.assert_array_equal(L.Upscale2D(3)(x).numpy(), np_up(x, 3))
    x = randn(2, 8, 4, 2)
    np.testing.assert_allclose(L.Downscale2D()(x).numpy(), np_avgpool(x), atol=1e-6)
    np.testing.assert_allclose(L.Downscale2D(4)(x).numpy(), np_avgpool(x, 4), atol=1e-6)


def test_to_rgb_from_rgb():
    to_rgb = built(L.ToRGB(3), (None, 4, 4, 8))
    from_rgb = built(L.FromRGB(8), (None, 4, 4, 3))
    randomize(to_rgb)
    randomize(from_rgb)
    x = randn(2, 4, 4, 8)
    k, b = to_rgb.get_weights()
    assert k.shape == (1, 1, 8, 3)
    np.testing.assert_allclose(to_rgb(x).numpy(), x @ (k[0, 0] * 0.03 / math.sqrt(8)) + b, atol=1e-5)
    img = randn(2, 4, 4, 3)
    k, b = from_rgb.get_weights()
    np.testing.assert_allclose(
        from_rgb(img).numpy(), np_lrelu(img @ (k[0, 0] * math.sqrt(2) / math.sqrt(3)) + b), atol=1e-5
    )
    assert to_rgb.get_config()["channels"] == 3 and to_rgb.get_config()["gain"] == 0.03
    assert from_rgb.get_config()["filters"] == 8


# --------------------------------------------------------------------------- serialization


def _image(shape=(8, 8, 4), name="x"):
    return keras.Input(shape, name=name)


def _model_cases():
    def dense():
        i = keras.Input((5,))
        return keras.Model(i, L.EqualizedDense(6, lr_multiplier=0.1, activation="lrelu", bias_init=0.5)(i))

    def single(layer_fn):
        def make():
            i = _image()
            return keras.Model(i, layer_fn()(i))

        return make

    def instance_norm():
        i = _image()
        y, s = L.InstanceNorm(return_stats=True)(i)
        return keras.Model(i, [y, s])

    def style_mod():
        x, w = _image(), keras.Input((7,), name="w")
        return keras.Model([x, w], L.StyleMod()([x, w]))

    def noise():
        x, n = _image(), _image((8, 8, 1), name="noise")
        return keras.Model([x, n], L.NoiseInjection()(x, noise=n))

    return {
        "dense": dense,
        "conv_up": single(lambda: L.EqualizedConv2D(3, 3, up=True, lr_multiplier=0.5, activation="lrelu")),
        "conv_down": single(lambda: L.EqualizedConv2D(3, 3, down=True, fused=False, use_bias=False)),
        "bias": single(lambda: L.Bias(lr_multiplier=0.1)),
        "pixel_norm": single(L.PixelNorm),
        "mbstd": single(lambda: L.MinibatchStdDev(2, 2)),
        "instance_norm": instance_norm,
        "style_mod": style_mod,
        "noise": noise,
        "blur": single(L.Blur),
        "upscale": single(lambda: L.Upscale2D(2)),
        "downscale": single(lambda: L.Downscale2D(4)),
        "to_rgb": single(lambda: L.ToRGB(3)),
        "from_rgb": single(lambda: L.FromRGB(5)),
    }


@pytest.mark.parametrize("case", sorted(_model_cases()))
def test_keras_save_load_round_trip(case, tmp_path):
    model = _model_cases()[case]()
    randomize(model)
    inputs = [randn(4, *tuple(i.shape[1:])) for i in model.inputs]
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    out_a = keras.tree.flatten(model(inputs if len(inputs) > 1 else inputs[0]))
    out_b = keras.tree.flatten(loaded(inputs if len(inputs) > 1 else inputs[0]))
    for a, b in zip(out_a, out_b):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


# --------------------------------------------------------------------------- XLA, mixed precision


def _xla_cases():
    x, w, noise = randn(4, 8, 8, 3), randn(4, 7), randn(4, 8, 8, 1)
    return {
        "conv_up_fused": (L.EqualizedConv2D(5, 3, up=True), (x,)),
        "conv_down_fused": (L.EqualizedConv2D(5, 3, down=True, activation="lrelu"), (x,)),
        "style_mod": (L.StyleMod(), ([x, w],)),
        "instance_norm": (L.InstanceNorm(return_stats=True), (x,)),
        "mbstd": (L.MinibatchStdDev(), (x,)),
        "noise": (L.NoiseInjection(), (x, noise)),
        "blur": (L.Blur(), (x,)),
    }


@pytest.mark.parametrize("case", sorted(_xla_cases()))
def test_xla_matches_eager(case):
    layer, args = _xla_cases()[case]
    eager = layer(*args)  # builds the variables eagerly
    randomize(layer)
    eager = keras.tree.flatten(layer(*args))
    xla = keras.tree.flatten(tf.function(layer, jit_compile=True)(*args))
    for a, b in zip(eager, xla):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


_MIXED_CASES = {
    "dense": (lambda d: L.EqualizedDense(6, lr_multiplier=0.1, activation="lrelu", dtype=d), [(3, 5)]),
    "conv_up_fused": (lambda d: L.EqualizedConv2D(4, 3, up=True, dtype=d), [(2, 4, 4, 3)]),
    "conv_down_fused": (lambda d: L.EqualizedConv2D(4, 3, down=True, dtype=d), [(2, 4, 4, 3)]),
    "conv_up": (lambda d: L.EqualizedConv2D(4, 3, up=True, fused=False, dtype=d), [(2, 4, 4, 3)]),
    "instance_norm": (lambda d: L.InstanceNorm(return_stats=True, dtype=d), [(2, 4, 4, 3)]),
    "style_mod": (lambda d: L.StyleMod(dtype=d), [(2, 4, 4, 3), (2, 7)]),
    "mbstd": (lambda d: L.MinibatchStdDev(dtype=d), [(4, 4, 4, 3)]),
    "noise": (lambda d: L.NoiseInjection(dtype=d), [(2, 4, 4, 3)]),
    "bias": (lambda d: L.Bias(dtype=d), [(2, 4, 4, 3)]),
    "pixel_norm": (lambda d: L.PixelNorm(dtype=d), [(2, 4, 4, 3)]),
    "blur": (lambda d: L.Blur(dtype=d), [(2, 4, 4, 3)]),
    "to_rgb": (lambda d: L.ToRGB(3, dtype=d), [(2, 4, 4, 3)]),
    "from_rgb": (lambda d: L.FromRGB(3, dtype=d), [(2, 4, 4, 3)]),
}


@pytest.mark.parametrize("case", sorted(_MIXED_CASES))
def test_mixed_float16(case):
    make, shapes = _MIXED_CASES[case]
    full, half = make("float32"), make("mixed_float16")
    args = [randn(*s) for s in shapes]
    kwargs = {"noise": randn(*shapes[0][:3], 1)} if case == "noise" else {}
    call_args = [args] if len(args) > 1 else args
    full(*call_args, **kwargs)
    half(*call_args, **kwargs)
    randomize(full, scale=0.3)
    half.set_weights(full.get_weights())
    assert all(v.dtype == "float32" for v in half.weights)
    out_full = keras.tree.flatten(full(*call_args, **kwargs))
    out_half = keras.tree.flatten(half(*call_args, **kwargs))
    for a, b in zip(out_full, out_half):
        assert b.dtype == tf.float16
        np.testing.assert_allclose(b.numpy().astype(np.float32), a.numpy(), rtol=2e-2, atol=2e-2)


# --------------------------------------------------------------------------- MirroredStrategy


def _build_stack():
    x, w, n = keras.Input((8, 8, 3)), keras.Input((16,)), keras.Input((8, 8, 1))
    h = L.FromRGB(8)(x)
    h = L.NoiseInjection()(h, noise=n)
    h = L.Bias()(h)
    h = keras.layers.LeakyReLU(negative_slope=0.2)(h)
    h = L.InstanceNorm()(h)
    h = L.StyleMod()([h, w])
    h = L.EqualizedConv2D(8, 3, up=True, use_bias=False)(h)
    h = L.Blur()(h)
    h = L.EqualizedConv2D(8, 3, down=True, activation="lrelu")(h)
    h = L.Downscale2D()(h)
    h = L.Upscale2D()(h)
    h = L.PixelNorm()(h)
    s = L.EqualizedDense(8, lr_multiplier=0.1, activation="lrelu")(w)
    h = L.StyleMod()([h, s])
    return keras.Model([x, w, n], L.ToRGB(3)(h))


def _train_step(model, opt, global_batch):
    def step(x, w, n, t):
        with tf.GradientTape() as tape:
            out = model([x, w, n])
            per_example = tf.reduce_mean(tf.square(out - t), axis=[1, 2, 3])
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def test_mirrored_strategy_step_matches_single_device(two_replicas):
    strategy = two_replicas
    assert strategy.num_replicas_in_sync == 2
    batch = 8
    data = (randn(batch, 8, 8, 3), randn(batch, 16), randn(batch, 8, 8, 1), randn(batch, 8, 8, 3))

    with strategy.scope():
        model = _build_stack()
        randomize(model, scale=0.3)
        opt = keras.optimizers.SGD(learning_rate=1.0)
        opt.build(model.trainable_variables)
    single = _build_stack()
    single.set_weights(model.get_weights())
    single_opt = keras.optimizers.SGD(learning_rate=1.0)
    single_opt.build(single.trainable_variables)

    initial = model.get_weights()
    dist_step = _train_step(model, opt, batch)

    @tf.function
    def distributed(inputs):
        losses = strategy.run(dist_step, args=inputs)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    dataset = tf.data.Dataset.from_tensor_slices(data).batch(batch)
    dist_inputs = next(iter(strategy.experimental_distribute_dataset(dataset)))
    loss_dist = distributed(dist_inputs)
    loss_single = tf.function(_train_step(single, single_opt, batch))(*data)

    np.testing.assert_allclose(loss_dist.numpy(), loss_single.numpy(), rtol=1e-5)
    for a, b, w0 in zip(model.get_weights(), single.get_weights(), initial):
        step_dist, step_single = a - w0, b - w0  # compare the updates, not just the weights
        assert np.abs(step_single).max() > 0
        np.testing.assert_allclose(step_dist, step_single, rtol=1e-3, atol=1e-7)


def test_noise_injection_random_inside_strategy_run(two_replicas):
    strategy = two_replicas
    with strategy.scope():
        layer = L.NoiseInjection()
        layer.build((None, 4, 4, 2))
        layer.weight.assign([1.0, 1.0])

    @tf.function
    def run(x):
        return strategy.run(layer, args=(x,))

    dataset = tf.data.Dataset.from_tensor_slices(np.zeros((4, 4, 4, 2), np.float32)).batch(4)
    out = run(next(iter(strategy.experimental_distribute_dataset(dataset))))
    parts = strategy.experimental_local_results(out)
    assert len(parts) == 2 and all(p.shape == (2, 4, 4, 2) for p in parts)
    assert all(np.std(p.numpy()) > 0.1 for p in parts)
