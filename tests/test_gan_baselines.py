"""GAN-family baselines: VAE-GAN, DCGAN and StyleGAN mode (networks, losses, steps, the loop)."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from alae_tf import losses
from alae_tf.models.dcgan import DCGAN, DCGANConfig
from alae_tf.models.stylegan import StyleGAN, StyleGANConfig
from alae_tf.models.vaegan import VAEGAN, GatedRMSprop, VAEGANConfig
from alae_tf.networks.dcgan import DCGANDiscriminator, DCGANGenerator
from alae_tf.networks.stylegan import ProgressiveDiscriminator
from alae_tf.networks.vaegan import VAEGANDecoder, VAEGANDiscriminator, VAEGANEncoder
from alae_tf.schedule import Schedule
from alae_tf.training.loop import LoopConfig, Trainer
from tfrecords_tools.writer import convert

TINY_VAEGAN = dict(resolution=16, channels=1, latent_size=6, dense_units=32, discriminator_units=16)
TINY_DCGAN = dict(resolution=16, channels=1, latent_size=6, start_channels=8, max_channels=32)
TINY_STYLEGAN = dict(resolution=8, channels=1, latent_size=8, layer_count=2, start_channels=8, max_channels=16,
                     mapping_layers=2)
BATCH = 8


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    convert(source="mnist5k", output_dir=str(out), name="digits", resolution=16, channels=1, max_images=64,
            parts=1)
    return str(out / "digits")


def _values(layer):
    return [v.numpy().copy() for v in layer.trainable_variables]


def _changed(before, layer):
    return [not np.array_equal(b, v.numpy()) for b, v in zip(before, layer.trainable_variables)]


def _run(fn):
    strategy = tf.distribute.get_strategy()
    return {k: float(v) for k, v in tf.function(lambda: strategy.run(fn))().items()}


# --------------------------------------------------------------------------- networks


def test_vaegan_64_networks_have_the_papers_layers():
    x = tf.random.uniform([2, 64, 64, 3], -1, 1, seed=0)
    enc = VAEGANEncoder(64, 3, latent_size=128)
    mean, log_var = enc(x)
    assert mean.shape == log_var.shape == (2, 128)
    assert [(c.filters, c.kernel_size, c.strides) for c in enc.convs] == [(w, (5, 5), (2, 2)) for w in (64, 128, 256)]
    assert enc.dense.units == 2048 and enc.dense.kernel.shape == (8 * 8 * 256, 2048)
    assert all(isinstance(n, keras.layers.BatchNormalization) and n.synchronized for n in enc.norms)
    dec = VAEGANDecoder(64, 3, latent_size=128)
    images = dec(mean)
    assert images.shape == (2, 64, 64, 3) and float(tf.reduce_max(tf.abs(images))) <= 1.0
    assert dec.dense.units == 8 * 8 * 256
    assert [(c.filters, c.kernel_size, c.strides) for c in dec.convs] == [(w, (5, 5), (2, 2)) for w in (256, 128, 32)]
    assert dec.to_image.filters == 3 and dec.to_image.kernel_size == (5, 5)
    dis = VAEGANDiscriminator(64, 3)
    logits, features = dis(x, training=True)
    assert logits.shape == (2,) and features.shape == (2, 8, 8, 256)
    assert dis.conv0.filters == 32 and dis.conv0.kernel_size == (5, 5) and dis.conv0.strides == (1, 1)
    assert [c.filters for c in dis.convs] == [128, 256, 256] and dis.dense.units == 512
    # The features are the 4th conv's output before its batch norm, recomputed layer by layer
    # (training mode: batch statistics).
    h = tf.nn.relu(dis.conv0(x))
    h = tf.nn.relu(dis.norms[0](dis.convs[0](h), training=True))
    h = tf.nn.relu(dis.norms[1](dis.convs[1](h), training=True))
    np.testing.assert_allclose(features.numpy(), dis.convs[2](h).numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(features.numpy(), dis.norms[2](dis.convs[2](h), training=True).numpy(), atol=0.1)


def test_vaegan_mnist_variant_drops_the_top_stage():
    enc, dec, dis = VAEGANEncoder(32, 1, 50), VAEGANDecoder(32, 1, 50), VAEGANDiscriminator(32, 1)
    x = tf.zeros([2, 32, 32, 1])
    assert enc(x)[0].shape == (2, 50) and dec(tf.zeros([2, 50])).shape == (2, 32, 32, 1)
    assert [c.filters for c in enc.convs] == [64, 128] and dec.dense.units == 8 * 8 * 128
    assert [c.filters for c in dec.convs] == [128, 32] and [c.filters for c in dis.convs] == [128, 256]
    assert dis(x)[1].shape == (2, 8, 8, 256)


def test_dcgan_networks_mirror_each_other():
    gen = DCGANGenerator(64, 3, latent_size=100, width=128)
    dis = DCGANDiscriminator(64, 3, width=128)
    images = gen(tf.zeros([2, 100]))
    assert images.shape == (2, 64, 64, 3)
    assert dis(images).shape == (2,)
    assert gen.dense.units == 4 * 4 * 1024  # Radford et al.'s 64 x 64 generator: 1024 / 512 / 256 / 128
    assert [c.filters for c in gen.convs] == [512, 256, 128] and gen.to_image.strides == (2, 2)
    assert [c.filters for c in dis.convs] == [128, 256, 512, 1024]
    assert len(dis.norms) == 3  # no batch norm on the first conv


@pytest.mark.parametrize("make, inputs", [
    (lambda: VAEGANEncoder(16, 1, 6, dense_units=32), lambda: tf.random.uniform([4, 16, 16, 1], seed=1)),
    (lambda: VAEGANDecoder(16, 1, 6), lambda: tf.random.normal([4, 6], seed=2)),
    (lambda: VAEGANDiscriminator(16, 1, dense_units=16), lambda: tf.random.uniform([4, 16, 16, 1], seed=3)),
    (lambda: DCGANGenerator(16, 1, 6, width=8), lambda: tf.random.normal([4, 6], seed=4)),
    (lambda: DCGANDiscriminator(16, 1, width=8), lambda: tf.random.uniform([4, 16, 16, 1], seed=5)),
    (lambda: ProgressiveDiscriminator(3, 1, 8, 16), lambda: tf.random.uniform([4, 16, 16, 1], seed=6)),
])
def test_serialization_round_trip(make, inputs):
    layer = make()
    x = inputs()
    expected = layer(x)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    clone(x)
    clone.set_weights(layer.get_weights())
    for a, b in zip(tf.nest.flatten(expected), tf.nest.flatten(clone(x))):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("config, message", [
    (lambda: VAEGANConfig(resolution=28), "--resolution must be one of 16, 32, 64 for --model=vaegan, got 28"),
    (lambda: DCGANConfig(resolution=48), "--resolution must be a power of two from 8 to 1024 for --model=dcgan, "
                                         "got 48"),
    (lambda: StyleGANConfig(resolution=32, layer_count=3), "--layer_count=3 gives 16x16 images but the resolution "
                                                           "is 32"),
    (lambda: VAEGANConfig(recon_vs_gan_weight=-1.0), "--recon_vs_gan_weight must be >= 0, got -1.0"),
])
def test_config_errors_name_the_flag(config, message):
    with pytest.raises(ValueError) as info:
        config()
    assert str(info.value) == message


# --------------------------------------------------------------------------- losses


def test_vaegan_losses_match_numpy():
    rng = np.random.default_rng(0)
    mean, log_var = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    kl = 0.5 * np.sum(np.exp(log_var) + mean ** 2 - 1.0 - log_var, axis=1)
    np.testing.assert_allclose(losses.gaussian_kl(tf.constant(mean), tf.constant(log_var)).numpy(), kl, rtol=1e-10)
    f, target = rng.normal(size=(5, 3, 3, 4)), rng.normal(size=(5, 3, 3, 4))
    expected = 0.5 * ((f - target) ** 2).reshape(5, -1).sum(axis=1)
    np.testing.assert_allclose(losses.feature_reconstruction(tf.constant(f), tf.constant(target)).numpy(),
                               expected, rtol=1e-10)
    target_var = tf.Variable(target)
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(losses.feature_reconstruction(tf.constant(f), target_var))
    assert tape.gradient(value, target_var) is None  # the reals' features are the target


@pytest.mark.parametrize("real, fake, train_dis, train_dec", [
    (0.69, 0.69, True, True),    # balanced
    (0.20, 0.69, False, True),   # D too good on reals (< 0.68 - 0.35): stop D
    (0.69, 0.30, False, True),   # too good on fakes
    (1.20, 0.69, True, False),   # D too bad on reals (> 0.68 + 0.35): stop the decoder's GAN term
    (0.69, 1.10, True, False),
    (0.20, 1.10, True, True),    # both would stop: both train
    (0.34, 1.02, True, True),    # just inside the band
])
def test_equilibrium_gates(real, fake, train_dis, train_dec):
    dis, dec = losses.equilibrium_gates(tf.constant(real), tf.constant(fake), 0.68, 0.35)
    assert (bool(dis), bool(dec)) == (train_dis, train_dec)


# --------------------------------------------------------------------------- steps


@pytest.mark.parametrize("equilibrium, recon_weight, moved", [
    (10.0, 1e-6, {"E", "Dec"}),   # every BCE far below 10 - 0.35: D too good, not trained
    (-10.0, 0.0, {"E", "Dis"}),   # every BCE above -10 + 0.35: no GAN term, no recon weight: Dec still
])
def test_vaegan_step_trains_what_the_gates_allow(equilibrium, recon_weight, moved):
    model = VAEGAN(VAEGANConfig(**TINY_VAEGAN, equilibrium=equilibrium, recon_vs_gan_weight=recon_weight), 1e-3)
    nets = {"E": model.E, "Dec": model.Dec, "Dis": model.Dis}
    before = {k: _values(v) for k, v in nets.items()}
    reals = tf.random.uniform([BATCH, 16, 16, 1], -1, 1, seed=7)
    terms = _run(lambda: model.replica_step(reals, 1.0, lod=0, global_batch=BATCH))
    assert all(math.isfinite(v) for v in terms.values())
    assert (terms["train_dis"], terms["train_dec_gan"]) == ((0.0, 1.0) if equilibrium > 0 else (1.0, 0.0))
    for name, net in nets.items():
        changed = _changed(before[name], net)
        assert all(changed) if name in moved else not any(changed), name
    # The gated-off optimizer's mean squares are untouched too (still their starting 1).
    gated = model.opt_dis if "Dis" not in moved else model.opt_dec
    assert all(np.array_equal(v.numpy(), np.ones(v.shape)) for v in gated._velocities)


def test_gated_rmsprop_matches_numpy_and_skips_zero_gradients():
    var = tf.Variable([1.0, -2.0, 3.0])
    opt = GatedRMSprop(learning_rate=0.1)
    opt.build([var])
    v, w = np.ones(3), var.numpy().astype(np.float64)
    for g in ([0.5, 0.0, -2.0], [0.0, 0.0, 0.0], [1.0, 3.0, 0.0]):
        opt.apply_gradients([(tf.constant(g), var)])
        g = np.array(g)
        v = np.where(g != 0, 0.9 * v + 0.1 * g ** 2, v)
        w = w - 0.1 * g / np.sqrt(v + 1e-7)
        np.testing.assert_allclose(var.numpy(), w, rtol=1e-6)
        np.testing.assert_allclose(opt._velocities[0].numpy(), v, rtol=1e-6)


def test_jit_with_synchronized_batch_norm_needs_one_replica(two_replicas):
    with two_replicas.scope(), pytest.raises(ValueError) as info:
        DCGAN(DCGANConfig(**TINY_DCGAN, jit=True))
    assert str(info.value) == ("--jit works with --model=dcgan on one replica only (its synchronized batch norm "
                               "all-reduces inside the XLA-compiled step)")


@pytest.mark.parametrize("step", ["d", "g"])
def test_dcgan_steps_update_only_their_network(step):
    model = DCGAN(DCGANConfig(**TINY_DCGAN))
    before = {"G": _values(model.G), "D": _values(model.D)}
    reals = tf.random.uniform([BATCH, 16, 16, 1], -1, 1, seed=8)
    call = {"d": lambda: model.d_step(reals, BATCH), "g": lambda: model.g_step(BATCH)}[step]
    assert all(math.isfinite(v) for v in _run(call).values())
    owner = {"d": "D", "g": "G"}[step]
    assert all(_changed(before[owner], getattr(model, owner)))
    other = "G" if owner == "D" else "D"
    assert not any(_changed(before[other], getattr(model, other)))


# --------------------------------------------------------------------------- the loop


class RecordingTrainer(Trainer):
    """Records the LOD of every step it runs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lods = []

    def _step_fn(self, lod, global_batch):
        inner = super()._step_fn(lod, global_batch)

        def step(iterator, alpha):
            self.lods.append(lod)
            return inner(iterator, alpha)

        return step


def _trainer(model_fn, dataset, run_dir, total, layer_count=1, per_lod=0):
    schedule = Schedule(layer_count, per_lod, [BATCH], [1e-3])
    loop = LoopConfig(output_dir=str(run_dir), data_dir=dataset, total_images=total, snapshot_images=10**9,
                      checkpoint_images=10**9, log_seconds=1e9, summary_steps=1, grid_size=4)
    return RecordingTrainer(model_fn, schedule, tf.distribute.get_strategy(), loop)


@pytest.mark.parametrize("name", ["vaegan", "dcgan"])
def test_single_resolution_models_train_and_restore(name, dataset, tmp_path):
    make = {"vaegan": lambda: VAEGAN(VAEGANConfig(**TINY_VAEGAN)),
            "dcgan": lambda: DCGAN(DCGANConfig(**TINY_DCGAN))}[name]
    trainer = _trainer(make, dataset, tmp_path / "run", total=3 * BATCH)
    terms = trainer.run()
    assert terms and all(math.isfinite(v) for v in terms.values())
    model = trainer.model
    assert trainer.lods == [0, 0, 0] and int(model.step.numpy()) == 3
    pngs = sorted(p.name for p in (tmp_path / "run" / "images").iterdir())
    expected = ["samples_000000kimg.png"] + (["reconstructions_000000kimg.png"] if model.can_encode else [])
    assert pngs == sorted(expected)
    # A fresh model restored from the checkpoint: weights, batch-norm statistics, optimizer state.
    fresh = make()
    tf.train.Checkpoint(**fresh.checkpoint_items()).restore(
        tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))).expect_partial()
    for key, item in model.checkpoint_items().items():
        if hasattr(item, "weights_by_name"):
            other = fresh.checkpoint_items()[key].weights_by_name
            assert item.weights_by_name.keys() == other.keys()
            for k, v in item.weights_by_name.items():
                np.testing.assert_array_equal(v.numpy(), other[k].numpy(), err_msg=f"{key} {k}")
    z = tf.random.normal([2, model.config.latent_size], seed=3)
    np.testing.assert_array_equal(model.generate(z).numpy(), fresh.generate(z).numpy())
    if model.can_encode:
        x = tf.random.uniform([2, 16, 16, 1], -1, 1, seed=4)
        assert model.encode(x).shape == (2, model.config.latent_size)
        np.testing.assert_array_equal(model.reconstruct(x).numpy(), fresh.reconstruct(x).numpy())
    else:
        with pytest.raises(ValueError, match="^--model=dcgan has no encoder"):
            model.encode(tf.zeros([1, 16, 16, 1]))


def test_stylegan_trains_progressively(dataset, tmp_path):
    per_lod = 2 * BATCH
    trainer = _trainer(lambda: StyleGAN(StyleGANConfig(**TINY_STYLEGAN)), dataset, tmp_path / "run",
                       total=2 * per_lod, layer_count=2, per_lod=per_lod)
    model = trainer.model
    ema_before = [v.numpy().copy() for v in model.ema.variables]
    d_before = _values(model.nets.D)
    terms = trainer.run()
    assert set(terms) == {"loss_d", "r1", "d_real", "d_fake", "loss_g"}
    assert all(math.isfinite(v) for v in terms.values())
    assert trainer.lods == [0, 0, 1, 1]
    assert int(trainer.state_lod.numpy()) == 1 and int(model.step.numpy()) == 4
    assert int(model.opt_d.iterations.numpy()) == 2 and int(model.opt_fg.iterations.numpy()) == 2  # reset at LOD 1
    assert any(_changed(d_before, model.nets.D))
    assert any(not np.array_equal(a, v.numpy()) for a, v in zip(ema_before, model.ema.variables))
    assert float(tf.reduce_sum(tf.abs(model.w_avg))) > 0
    assert model.generate(tf.random.normal([4, 8], seed=1)).shape == (4, 8, 8, 1)
    assert not model.can_encode and "ema_D" not in model.checkpoint_items()
