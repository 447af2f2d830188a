"""The ALAE model: which variables each step moves, R1, EMA, style mixing, a 2-replica style step
(tests/test_models.py: 1 against 2 replicas)."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from alae_tf.models.alae import ALAE, ALAEConfig

TINY_STYLE = dict(model="alae_style", resolution=16, channels=1, latent_size=8, layer_count=3,
                  start_channels=8, max_channels=16, mapping_layers=2)
TINY_MLP = dict(model="alae_mlp", resolution=8, channels=1, latent_size=6, mapping_layers=2,
                mlp_hidden=(16, 12))


@pytest.fixture(scope="module")
def style_model():
    return ALAE(ALAEConfig(**TINY_STYLE), learning_rate=0.01)


def _values(layer):
    return [v.numpy().copy() for v in layer.trainable_variables]


def _changed(before, layer):
    return {v.path: not np.array_equal(b, v.numpy()) for b, v in zip(before, layer.trainable_variables)}


def _run(fn):
    strategy = tf.distribute.get_strategy()
    return tf.function(lambda: strategy.run(fn))()


@pytest.mark.parametrize("step", ["d", "g", "lae"])
def test_each_step_updates_exactly_its_networks(style_model, step):
    m = style_model
    lod, batch = 2, 4
    reals = tf.random.uniform([batch, 16, 16, 1], -1, 1, seed=1)
    nets = m.nets.as_dict()
    before = {k: _values(v) for k, v in nets.items()}
    calls = {"d": lambda: m.d_step(reals, 1.0, lod=lod, global_batch=batch),
             "g": lambda: m.g_step(1.0, lod=lod, global_batch=batch),
             "lae": lambda: m.lae_step(1.0, lod=lod, global_batch=batch)}
    terms = _run(calls[step])
    assert all(np.isfinite(float(v)) for v in terms.values())
    updated = {"d": {"E", "D"}, "g": {"F", "G"}, "lae": {"E", "F", "G"}}[step]
    for name, layer in nets.items():
        changed = _changed(before[name], layer)
        if name in updated:
            # At alpha = 1 the lower LODs' toRGB / fromRGB get no (or zero) gradient: all else moves.
            lower_rgb = {p for p in changed if "_rgb0/" in p or "_rgb1/" in p}
            assert {p for p, c in changed.items() if not c} == lower_rgb, f"{step} step, {name}"
        else:
            assert not any(changed.values()), f"{step} step changed {name}"


def _np_lrelu(x):
    return np.where(x >= 0, x, 0.2 * x)


def test_r1_matches_numpy_on_tiny_mlp():
    m = ALAE(ALAEConfig(**TINY_MLP, r1_gamma=7.0))
    reals = np.random.default_rng(3).uniform(-1, 1, (5, 8, 8, 1)).astype(np.float32)
    terms, _, _ = m._d_grads(tf.constant(reals), 1.0, lod=0, global_batch=5)

    def dense(layer):  # run-time weights from the stored ones, computed here independently
        k = layer.kernel.numpy().astype(np.float64)
        c = layer.gain / math.sqrt(k.shape[0]) * layer.lr_multiplier
        return k * c, layer.bias.numpy().astype(np.float64) * layer.lr_multiplier

    e_layers = [dense(layer) for layer in m.nets.E.dense]
    d_vec = np.eye(6)
    for layer in m.nets.D.dense:
        d_vec = d_vec @ dense(layer)[0]  # D is affine: dD/dw = V1 V2 V3
    x = reals.reshape(5, -1).astype(np.float64)
    pre = []
    h = x
    for i, (k, b) in enumerate(e_layers):
        a = h @ k + b
        pre.append(a)
        h = _np_lrelu(a) if i < len(e_layers) - 1 else a
    g = np.tile(d_vec[:, 0], (5, 1))
    for i in range(len(e_layers) - 1, -1, -1):
        if i < len(e_layers) - 1:
            g = g * np.where(pre[i] >= 0, 1.0, 0.2)
        g = g @ e_layers[i][0].T
    r1 = 0.5 * 7.0 * np.sum(g ** 2, axis=1)
    np.testing.assert_allclose(float(terms["r1"]), r1.mean(), rtol=1e-4)


def test_ema_arithmetic(style_model):
    m = style_model
    rng = np.random.default_rng(0)
    pairs = list(zip(m.ema.variables, m.nets.variables))[:5]
    for ema_var, var in pairs:
        ema_var.assign(rng.standard_normal(ema_var.shape).astype(np.float32))
        var.assign(rng.standard_normal(var.shape).astype(np.float32))
    old = [(e.numpy().copy(), v.numpy().copy()) for e, v in pairs]
    step = int(m.step.numpy())
    m.after_step(global_batch=500)
    beta = 0.5 ** (500 / 10_000)  # ten-thousand-image half-life
    for (e0, v0), (ema_var, _) in zip(old, pairs):
        np.testing.assert_allclose(ema_var.numpy(), e0 + (1 - beta) * (v0 - e0), rtol=1e-5, atol=1e-6)
    assert int(m.step.numpy()) == step + 1


def test_style_mixing_arithmetic(style_model):
    m = style_model
    z = tf.random.normal([3, 8], seed=2)
    z2 = tf.random.normal([3, 8], seed=3)
    w1, w2 = m.nets.F(z).numpy(), m.nets.F(z2).numpy()
    lod, mixed, cutoffs = 1, 0, set()
    trials = 300
    for seed in range(trials):
        cutoff = m.mixing_cutoff(tf.constant([seed, 7]), lod)
        _, styles = m.styles(m.nets, z, lod, z2, cutoff)
        styles = styles.numpy()
        assert styles.shape == (3, 6, 8)
        first = [np.allclose(styles[:, i], w1, atol=1e-6) for i in range(6)]
        second = [np.allclose(styles[:, i], w2, atol=1e-6) for i in range(6)]
        assert all(a or b for a, b in zip(first, second))
        cutoff = first.index(False) if False in first else 6
        assert all(first[:cutoff]) and all(second[cutoff:])
        if cutoff < 6:
            mixed += 1
            cutoffs.add(cutoff)
    # cutoff ~ U{1, ..., 2 * (lod + 1)} with probability 0.9 (the release's randint(1, 2 * (lod + 1))).
    assert cutoffs == {1, 2, 3, 4}
    assert abs(mixed / trials - 0.9) < 4 * math.sqrt(0.09 / trials)


def test_truncation(style_model):
    m = style_model
    m.w_avg.assign(np.full([8], 2.0, np.float32))
    styles = tf.ones([2, 6, 8])
    out = m.truncate(styles).numpy()
    psi = m.config.truncation_psi
    np.testing.assert_allclose(out[:, :6], 2.0 + (1.0 - 2.0) * psi, rtol=1e-6)  # cutoff 8 > 6 slots


def test_reset_optimizers_keeps_learning_rate(style_model):
    m = style_model
    m.set_learning_rate(0.004)
    _run(lambda: m.g_step(1.0, lod=2, global_batch=2))
    assert int(m.opt_fg.iterations.numpy()) > 0
    m.reset_optimizers()
    for opt in m.optimizers.values():
        assert int(opt.iterations.numpy()) == 0
        for v in opt.variables:
            if v is not opt.learning_rate and "learning_rate" not in v.path:
                assert not np.any(v.numpy()), v.path
    assert float(m.opt_fg.learning_rate.numpy()) == pytest.approx(0.004)
    assert float(m.opt_d.learning_rate.numpy()) == pytest.approx(0.004 * m.config.ttur)


def test_two_replica_style_model_runs_and_stays_in_sync(two_replicas):
    strategy = two_replicas
    with strategy.scope():
        model = ALAE(ALAEConfig(**TINY_STYLE))
    reals = tf.random.uniform([4, 8, 8, 1], -1, 1)
    dist = strategy.experimental_distribute_values_from_function(
        lambda ctx: reals[ctx.replica_id_in_sync_group * 2:(ctx.replica_id_in_sync_group + 1) * 2])

    @tf.function
    def step(x):
        terms = strategy.run(model.replica_step, args=(x, tf.constant(0.3)), kwargs=dict(lod=1, global_batch=4))
        model.after_step(4)
        return {k: strategy.reduce("SUM", v, axis=None) for k, v in terms.items()}

    terms = step(dist)
    assert all(np.isfinite(float(v)) for v in terms.values())
    for v in model.nets.E.trainable_variables[:6]:
        replicas = [x.numpy() for x in v.value.values]
        np.testing.assert_array_equal(replicas[0], replicas[1])


def test_config_errors():
    with pytest.raises(ValueError, match=r"--layer_count=3 gives 16x16 images but the resolution is 32"):
        ALAEConfig(**dict(TINY_STYLE, resolution=32))


def test_mixed_precision_step_is_finite_and_keeps_float32_variables():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        m = ALAE(ALAEConfig(**TINY_STYLE, mixed_precision=True))
        reals = tf.random.uniform([2, 16, 16, 1], -1, 1)
        before = [v.numpy().copy() for v in m.nets.E.trainable_variables]
        scale = float(m.opt_e.dynamic_scale.numpy())
        strategy = tf.distribute.get_strategy()
        step = tf.function(lambda: strategy.run(
            lambda: m.replica_step(reals, tf.constant(0.5), lod=2, global_batch=2)))
        # Dynamic loss scaling skips the steps whose float16 gradients overflow, halving the scale.
        for _ in range(30):
            terms = step()
            assert all(np.isfinite(float(v)) for v in terms.values())
            if any(not np.array_equal(b, v.numpy()) for b, v in zip(before, m.nets.E.trainable_variables)):
                break
        else:
            pytest.fail("no E update in 30 mixed-precision steps")
        assert float(m.opt_e.dynamic_scale.numpy()) < scale
        assert all(v.dtype == "float32" for v in m.nets.variables)
        assert m.nets.G(tf.zeros([1, 6, 8], tf.float16), lod=2).dtype == tf.float16
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def test_bfloat16_step_updates_every_step_and_tracks_float32():
    """--mixed_precision on a CPU with bfloat16 instructions: no loss scaling, every step
    updates, variables stay float32, and the networks agree with float32 ones holding the
    same weights to bfloat16's precision."""
    keras.utils.set_random_seed(0)
    reference = ALAE(ALAEConfig(**TINY_STYLE))
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        m = ALAE(ALAEConfig(**TINY_STYLE))
        for a, b in zip(m.nets.variables, reference.nets.variables):
            a.assign(b)
        images = tf.random.stateless_uniform([4, 16, 16, 1], [0, 1], -1, 1)
        w16, w32 = m.nets.E(images, lod=2), reference.nets.E(images, lod=2)
        assert w16.dtype == tf.bfloat16
        x16 = m.nets.G(tf.cast(w32[:, None, :], tf.bfloat16) * tf.ones([1, 6, 1], tf.bfloat16),
                       lod=2, noise=False)
        x32 = reference.nets.G(w32[:, None, :] * tf.ones([1, 6, 1]), lod=2, noise=False)
        # Relative RMS error: bfloat16 rounds to 2**-8 relative per op, and over seeds 0-11 these
        # networks stayed within 0.009 (E) and 0.025 (G); a wrong layer gives errors of order 1.
        for low, full in ((w16, w32), (x16, x32)):
            low, full = low.numpy().astype(np.float32), full.numpy()
            assert np.sqrt(np.mean((low - full) ** 2) / np.mean(full ** 2)) < 0.05
        strategy = tf.distribute.get_strategy()
        step = tf.function(lambda: strategy.run(
            lambda: m.replica_step(images, tf.constant(0.5), lod=2, global_batch=4)))
        for _ in range(3):
            before = [v.numpy().copy() for v in m.nets.E.trainable_variables]
            terms = step()
            assert all(np.isfinite(float(v)) for v in terms.values())
            assert any(not np.array_equal(b, v.numpy())
                       for b, v in zip(before, m.nets.E.trainable_variables))
        assert all(v.dtype == "float32" for v in m.nets.variables)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def test_mixed_policy_by_machine(tmp_path):
    from alae_tf import precision

    assert precision.mixed_policy(has_gpu=True, has_bf16=False) == "mixed_float16"
    assert precision.mixed_policy(has_gpu=False, has_bf16=True) == "mixed_bfloat16"
    assert precision.mixed_policy(has_gpu=False, has_bf16=False) == "float32"
    assert precision.loss_scaling("mixed_float16") and not precision.loss_scaling("mixed_bfloat16")
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 avx512_vnni\n")
    assert precision.cpu_has_bf16(str(info))
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_vnni\n")
    assert not precision.cpu_has_bf16(str(info))
    assert not precision.cpu_has_bf16(str(tmp_path / "absent"))


def test_first_noise_map_is_shared_by_the_batch():
    """As in the release (its first noise is added to the 4x4 constant before the batch exists),
    the 4x4 block's first noise map is one map for the whole batch; the second is per sample."""
    from alae_tf.networks.style import StyleGenerator

    g = StyleGenerator(layer_count=1, latent_size=4, channels=1, start_channels=4, max_channels=4)
    styles = tf.ones([3, 2, 4])
    g(styles, lod=0, noise=True)  # builds the noise layers
    quiet = g(styles, lod=0, noise=False).numpy()
    block = g.blocks[0]
    for first, second in ((0.5, 0.0), (0.0, 0.5)):
        block.noise0.weight.assign(np.full([4], first, np.float32))
        block.noise1.weight.assign(np.full([4], second, np.float32))
        out = g(styles, lod=0, noise=tf.constant([4, 5])).numpy()
        assert not np.allclose(out, quiet, atol=1e-4)
        same = np.allclose(out[0], out[1], atol=1e-6) and np.allclose(out[0], out[2], atol=1e-6)
        assert same == (first > 0), (first, second)
