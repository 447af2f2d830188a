"""Autoencoder baselines (ae, dae, sae, vae, rae): networks, loss terms against numpy, tied weights, the
code Gaussian of samples, training under the Trainer, replicas, checkpoints, export, CLI; the recurrent
networks on a sequence task; greedy layer-wise stages (what each freezes, resume across stages)."""
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from alae_tf import losses
from alae_tf.models.autoencoders import Autoencoder, AutoencoderConfig
from alae_tf.networks.autoencoders import ConvDecoder, ConvEncoder, DenseDecoder, DenseEncoder, conv_filters
from alae_tf.networks.recurrent import RowDecoder, RowEncoder, SequenceDecoder, SequenceEncoder
from alae_tf.schedule import Schedule
from alae_tf.training.loop import LoopConfig, Trainer
from tfrecords_tools.writer import convert

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(resolution=16, channels=1, latent_size=4, hidden=(24,), start_channels=4, max_channels=8)
BATCH = 8


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ae_data")
    convert(source="mnist5k", output_dir=str(out), name="digits", resolution=16, channels=1,
            max_images=256, parts=2)
    return str(out / "digits")


def _env():
    return dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")


def _train_cli(*args):
    return subprocess.run([sys.executable, "-m", "alae_tf.train", *args], capture_output=True, text=True,
                          cwd=REPO, env=_env(), timeout=600)


# --------------------------------------------------------------------------------------- networks

@pytest.mark.parametrize("make, inputs, shape", [
    (lambda: DenseEncoder(16, 1, (24, 12), 6), (3, 16, 16, 1), (3, 6)),
    (lambda: DenseDecoder(16, 1, (24, 12), 6), (3, 6), (3, 16, 16, 1)),
    (lambda: ConvEncoder(32, 3, 10, start_channels=4, max_channels=8, code_activation="sigmoid"),
     (2, 32, 32, 3), (2, 10)),
    (lambda: ConvDecoder(32, 3, 10, start_channels=4, max_channels=8), (2, 10), (2, 32, 32, 3)),
    (lambda: ConvEncoder(4, 1, 5), (2, 4, 4, 1), (2, 5)),
    (lambda: ConvDecoder(4, 1, 5), (2, 5), (2, 4, 4, 1)),
    (lambda: SequenceEncoder(3, 8, 5, "lstm"), (2, 7, 3), (2, 5)),
    (lambda: SequenceDecoder(7, 3, 8, 5, "gru"), (2, 5), (2, 7, 3)),
    (lambda: RowEncoder(16, 3, 8, 5, "gru"), (2, 16, 16, 3), (2, 5)),
    (lambda: RowDecoder(16, 3, 8, 5, "lstm"), (2, 5), (2, 16, 16, 3)),
])
def test_network_shapes_and_serialisation_round_trip(make, inputs, shape):
    layer = make()
    x = tf.random.stateless_uniform(inputs, [1, 2], -1, 1)
    y = layer(x)
    assert tuple(y.shape) == shape
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(copy) is type(layer) and copy.get_config() == layer.get_config()
    copy(x)
    assert [w.shape for w in copy.weights] == [w.shape for w in layer.weights]
    copy.set_weights(layer.get_weights())
    np.testing.assert_allclose(copy(x).numpy(), y.numpy(), rtol=1e-6, atol=1e-6)


def test_conv_stages_halve_to_4x4():
    assert conv_filters(32, 16, 512) == [16, 32, 64]
    assert conv_filters(64, 32, 64) == [32, 64, 64, 64]
    assert conv_filters(4, 16, 512) == []
    enc = ConvEncoder(32, 1, 7, start_channels=16, max_channels=512)
    enc(tf.zeros([1, 32, 32, 1]))
    assert [c.kernel.shape for c in enc.convs] == [(4, 4, 1, 16), (4, 4, 16, 32), (4, 4, 32, 64)]


def test_tied_decoder_holds_one_kernel_per_layer_and_uses_it_transposed():
    model = Autoencoder(AutoencoderConfig(model="ae", tied_weights=True, **dict(TINY, hidden=(24, 12))))
    enc_kernels = model.E.kernels()
    assert [tuple(k.shape) for k in enc_kernels] == [(256, 24), (24, 12), (12, 4)]
    # The decoder owns only biases; every kernel of the pair is one of the encoder's variables.
    assert [tuple(w.shape) for w in model.D.weights] == [(12,), (24,), (256,)]
    kernels = [v for v in model.trainable_variables if len(v.shape) == 2]
    assert len(kernels) == 3 and {id(v) for v in kernels} == {id(k) for k in enc_kernels}
    for b in model.D.biases:
        b.assign(tf.random.stateless_normal(b.shape, [3, len(b.shape) + b.shape[0]]))
    codes = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    k = [v.numpy() for v in enc_kernels]
    b = [v.numpy() for v in model.D.biases]
    h = np.maximum(codes @ k[2].T + b[0], 0)
    h = np.maximum(h @ k[1].T + b[1], 0)
    expected = (h @ k[0].T + b[2]).reshape(5, 16, 16, 1)
    np.testing.assert_allclose(model.decode(codes).numpy(), expected, rtol=1e-5, atol=1e-5)
    # A step moves the shared kernel: the decoder sees the new value (nothing to keep in sync).
    before = model.decode(codes).numpy()
    model.replica_step(tf.random.stateless_uniform([BATCH, 16, 16, 1], [4, 4], -1, 1), 1.0, 0, BATCH)
    assert not np.allclose(model.decode(codes).numpy(), before)


# Sequence task: reconstruct random sequences of 4 steps x 2 features, uniform in [-1, 1] (variance
# 1/3), through an 8-d code, on sequences never seen in training. After 800 Adam steps (lr 0.01,
# batch 64, 32 units) the held-out MSE was 0.0004 to 0.0016 over seeds 0-3 and both cells; the test
# asks < SEQUENCE_MSE = 0.01 (3 % of the data's variance; predicting zeros gives 0.33).
SEQUENCE_MSE = 0.01


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recurrent_networks_learn_to_reconstruct_short_random_sequences(cell):
    steps, features, code = 4, 2, 8
    keras.utils.set_random_seed(0)
    enc, dec = SequenceEncoder(features, 32, code, cell), SequenceDecoder(steps, features, 32, code, cell)
    held_out = tf.random.stateless_uniform([256, steps, features], [9, 9], -1, 1)
    assert tuple(enc(held_out).shape) == (256, code) and tuple(dec(enc(held_out)).shape) == (256, steps, features)
    variables = enc.trainable_variables + dec.trainable_variables
    opt = keras.optimizers.Adam(0.01)

    @tf.function
    def train(seed):
        x = tf.random.stateless_uniform([64, steps, features], seed, -1, 1)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(dec(enc(x)) - x))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))

    def held_out_mse():
        return float(tf.reduce_mean(tf.square(dec(enc(held_out)) - held_out)))

    start = held_out_mse()
    for i in range(800):
        train(tf.constant([0, i]))
    assert start > 0.25 and held_out_mse() < SEQUENCE_MSE


# ------------------------------------------------------------------------------------ loss terms

def test_gaussian_kl_matches_the_two_gaussian_formula():
    rng = np.random.default_rng(1)
    mean = rng.normal(size=(6, 5))
    log_var = rng.normal(size=(6, 5))
    sigma = np.exp(0.5 * log_var)
    # KL(N(m1, s1^2) || N(m2, s2^2)) = log(s2 / s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2, m2=0, s2=1
    expected = (np.log(1.0 / sigma) + (sigma ** 2 + mean ** 2) / 2.0 - 0.5).sum(axis=1)
    got = losses.gaussian_kl(tf.constant(mean, tf.float32), tf.constant(log_var, tf.float32)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert np.all(losses.gaussian_kl(tf.zeros([2, 3]), tf.zeros([2, 3])).numpy() == 0)


def test_sparsity_penalties_match_numpy():
    rng = np.random.default_rng(2)
    h = rng.normal(size=(4, 7)).astype(np.float32)
    np.testing.assert_allclose(losses.l1_sparsity(tf.constant(h)).numpy(), np.abs(h).sum(axis=1), rtol=1e-6)
    rho, rho_hat = 0.05, rng.uniform(0.01, 0.99, size=7)
    # Bernoulli KL as cross-entropy minus entropy.
    cross = -(rho * np.log(rho_hat) + (1 - rho) * np.log(1 - rho_hat))
    entropy = -(rho * np.log(rho) + (1 - rho) * np.log(1 - rho))
    got = losses.kl_sparsity(rho, tf.constant(rho_hat, tf.float32)).numpy()
    np.testing.assert_allclose(got, (cross - entropy).sum(), rtol=1e-5)
    assert abs(float(losses.kl_sparsity(rho, tf.fill([3], rho)))) < 1e-6


def test_sparse_kl_step_uses_the_batch_mean_activation():
    model = Autoencoder(AutoencoderConfig(model="sae", sparsity="kl", sparsity_weight=0.5, **TINY))
    x = tf.random.stateless_uniform([BATCH, 16, 16, 1], [5, 5], -1, 1)
    h = model.E(x).numpy()
    assert h.min() > 0 and h.max() < 1  # a sigmoid code
    rho_hat = h.mean(axis=0)
    omega = (0.05 * np.log(0.05 / rho_hat) + 0.95 * np.log(0.95 / (1 - rho_hat))).sum()
    recon = np.mean((model.reconstruct(x).numpy() - x.numpy()) ** 2)
    terms = model.replica_step(x, 1.0, 0, BATCH)
    np.testing.assert_allclose(float(terms["sparsity"]), omega, rtol=1e-5)
    np.testing.assert_allclose(float(terms["recon"]), recon, rtol=1e-5)
    np.testing.assert_allclose(float(terms["loss"]), recon + 0.5 * omega, rtol=1e-5)


def test_vae_loss_is_the_negative_elbo():
    config = AutoencoderConfig(model="vae", vae_sigma=0.5, **TINY)
    model = Autoencoder(config)
    x = tf.random.stateless_uniform([BATCH, 16, 16, 1], [6, 6], -1, 1)
    out = model.E(x).numpy()
    mean, log_var = out[:, :4], out[:, 4:]
    eps = tf.random.stateless_normal([BATCH, 4], model._seed(1)).numpy()  # purpose _EPS, step 0
    fakes = model.decode(mean + np.exp(0.5 * log_var) * eps).numpy()
    squared = ((fakes - x.numpy()) ** 2).sum(axis=(1, 2, 3))
    kl = (-np.log(np.exp(0.5 * log_var)) + (np.exp(log_var) + mean ** 2) / 2 - 0.5).sum(axis=1)
    terms = model.replica_step(x, 1.0, 0, BATCH)
    np.testing.assert_allclose(float(terms["kl"]), kl.mean(), rtol=1e-4)
    np.testing.assert_allclose(float(terms["loss"]), np.mean(squared / (2 * 0.25) + kl), rtol=1e-4)
    np.testing.assert_allclose(float(terms["recon"]), squared.mean() / 256, rtol=1e-4)
    # Inference is deterministic: the code is the posterior mean.
    np.testing.assert_allclose(model.encode(x).numpy(), model.E(x).numpy()[:, :4], rtol=1e-6)


@pytest.mark.parametrize("noise, level", [("gaussian", 0.3), ("dropout", 0.25)])
def test_denoising_noise_statistics(noise, level):
    model = Autoencoder(AutoencoderConfig(model="dae", noise=noise, noise_level=level, **TINY))
    x = tf.random.stateless_uniform([64, 16, 16, 1], [7, 7], -1, 1)
    a = model.corrupt(x, 64).numpy()
    np.testing.assert_array_equal(model.corrupt(x, 64).numpy(), a)  # seeded by (seed, step)
    if noise == "gaussian":
        d = a - x.numpy()
        assert abs(d.mean()) < 0.01 and abs(d.std() - level) < 0.01
    else:
        dropped = a == 0
        assert abs(dropped.mean() - level) < 0.015
        np.testing.assert_allclose(a[~dropped], x.numpy()[~dropped] / (1 - level), rtol=1e-6)
    model.step.assign_add(1)
    assert not np.array_equal(model.corrupt(x, 64).numpy(), a)


def test_code_gaussian_is_the_bias_corrected_moving_average():
    config = AutoencoderConfig(model="ae", code_decay=0.9, **TINY)
    model = Autoencoder(config)
    mean0, scale0 = model.code_gaussian()  # before training: N(0, I)
    np.testing.assert_array_equal(mean0.numpy(), 0)
    np.testing.assert_array_equal(scale0.numpy(), np.eye(4))
    rng = np.random.default_rng(3)
    batches = [rng.normal(loc=[1, -2, 0, 3], scale=[1, 2, 0.5, 1], size=(16, 4)) for _ in range(5)]
    for b in batches:
        model.update_code_stats(tf.constant(b, tf.float32))
    weights = 0.1 * 0.9 ** np.arange(4, -1, -1)  # the last batch has the largest weight
    weights /= weights.sum()
    mean = sum(w * b.mean(axis=0) for w, b in zip(weights, batches))
    moment = sum(w * b.T @ b / len(b) for w, b in zip(weights, batches))
    cov = moment - np.outer(mean, mean)
    got_mean, scale = (t.numpy() for t in model.code_gaussian())
    np.testing.assert_allclose(got_mean, mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scale @ scale.T, cov, rtol=1e-3, atol=1e-4)
    # Samples decode mean + A z.
    z = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(model.prior_codes(z).numpy(), mean + z @ scale.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.generate(z).numpy(), model.decode(mean + z @ scale.T).numpy(), atol=1e-4)


# --------------------------------------------------------------------------------------- training

VARIANTS = {
    "ae_tied": dict(model="ae", tied_weights=True),
    "ae_conv": dict(model="ae", ae_arch="conv"),
    "dae_gaussian": dict(model="dae", noise="gaussian"),
    "dae_dropout": dict(model="dae", noise="dropout", ae_arch="conv"),
    "sae_l1": dict(model="sae", sparsity="l1"),
    "sae_kl": dict(model="sae", sparsity="kl"),
    "vae_mlp": dict(model="vae"),
    "vae_conv": dict(model="vae", ae_arch="conv"),
    "rae_lstm": dict(model="rae", rnn_units=8),
    "rae_gru": dict(model="rae", rnn_cell="gru", rnn_units=8),
}


def _trainer(dataset, run_dir, config, total, checkpoint_images=10**9, strategy=None):
    loop = LoopConfig(output_dir=str(run_dir), data_dir=dataset, total_images=total, snapshot_images=10**9,
                      checkpoint_images=checkpoint_images, log_seconds=1e9, summary_steps=2, grid_size=4)
    schedule = Schedule(1, 0, [BATCH], [0.002])
    return Trainer(lambda: Autoencoder(config), schedule, strategy or tf.distribute.get_strategy(), loop)


def _state(model):
    return {"E": [v.numpy() for v in model.E.weights], "D": [v.numpy() for v in model.D.weights],
            "codes": [v.numpy() for v in (model.code_sum, model.code_moment, model.code_weight)]}


# One variant per model here (the others train in the replica, checkpoint and CLI tests).
@pytest.mark.parametrize("variant", ["ae_tied", "dae_dropout", "sae_kl", "vae_conv", "rae_gru"])
def test_each_model_trains_under_the_trainer(variant, dataset, tmp_path):
    config = AutoencoderConfig(**VARIANTS[variant], **TINY)
    trainer = _trainer(dataset, tmp_path / "run", config, total=4 * BATCH)
    model = trainer.model
    before = _state(model)
    terms = trainer.run()
    assert all(np.isfinite(v) for v in terms.values())
    expected = {"loss", "recon"} | {"vae": {"kl"}, "sae": {"sparsity"}}.get(config.model, set())
    assert set(terms) == expected
    after = _state(model)
    for name in ("E", "D"):  # every weight of both networks moved
        for a, b in zip(before[name], after[name]):
            assert not np.array_equal(a, b), name
    # The code Gaussian is fitted for the deterministic models only; the VAE samples N(0, I).
    assert float(after["codes"][2]) == (0.0 if config.model == "vae" else pytest.approx(1 - 0.99 ** 4, rel=1e-5))
    assert int(model.step.numpy()) == 4 and int(model.opt.iterations.numpy()) == 4
    assert model.generate(trainer.grid_z).shape == (4, 16, 16, 1)


def test_checkpoint_resume_and_load_run(dataset, tmp_path):
    from alae_tf import runs

    run = tmp_path / "run"
    config = AutoencoderConfig(model="sae", **TINY)
    first = _trainer(dataset, run, config, total=4 * BATCH, checkpoint_images=2 * BATCH)
    runs.save_config(str(run), config)
    first.run()
    saved = _state(first.model)
    loaded = runs.load_run(str(run))
    assert isinstance(loaded, Autoencoder) and loaded.config == config
    for name in saved:
        for a, b in zip(saved[name], _state(loaded)[name]):
            np.testing.assert_array_equal(a, b)
    x = tf.random.stateless_uniform([3, 16, 16, 1], [8, 8], -1, 1)
    np.testing.assert_array_equal(loaded.reconstruct(x).numpy(), first.model.reconstruct(x).numpy())
    z = tf.random.stateless_normal([3, 4], [9, 9])
    np.testing.assert_allclose(loaded.generate(z).numpy(), first.model.generate(z).numpy(), atol=1e-6)
    second = _trainer(dataset, run, config, total=6 * BATCH)
    second.run()
    assert int(second.model.step.numpy()) == 6 and int(second.model.opt.iterations.numpy()) == 6


# ------------------------------------------------------------------------ greedy layer-wise stages

GREEDY = dict(TINY, hidden=(24, 12))  # three pairs: 256 <-> 24, 24 <-> 12, 12 <-> 4


@pytest.mark.parametrize("tied", [False, True])
def test_greedy_stage_trains_its_pair_on_the_codes_below_and_freezes_the_rest(tied):
    model = Autoencoder(AutoencoderConfig(model="ae", greedy_kimg=(1, 2), tied_weights=tied, **GREEDY),
                        learning_rate=0.002)
    assert model.config.greedy_kimg == (1.0, 2.0, 2.0)  # the last value repeats
    assert model.stage_names() == ["greedy pair 1", "greedy pair 2", "greedy pair 3", "fine-tune"]
    assert [model.stage_at(i) for i in (0, 999, 1000, 2999, 3000, 4999, 5000, 10**6)] == [0, 0, 1, 1, 2, 2, 3, 3]
    e, d = model.E.dense, (None if tied else model.D.dense)
    decoder_layers = [model.D.biases[2], model.D.biases[1], model.D.biases[0]] if tied else [d[2], d[1], d[0]]
    pairs = ([e[0], e[1], e[2]], decoder_layers)
    x = tf.random.stateless_uniform([BATCH, 16, 16, 1], [11, 11], -1, 1)

    def pair2_mse():
        """Stage 2 (pair 2): the encoder layer 24 -> 12 and the decoder layer 12 -> 24 reconstruct
        the codes of pair 1 (the first layer's ReLU)."""
        h1 = np.maximum(x.numpy().reshape(BATCH, -1) @ e[0].kernel.numpy() + e[0].bias.numpy(), 0)
        h2 = np.maximum(h1 @ e[1].kernel.numpy() + e[1].bias.numpy(), 0)
        if tied:
            out = np.maximum(h2 @ e[1].kernel.numpy().T + model.D.biases[1].numpy(), 0)
        else:
            out = np.maximum(h2 @ d[1].kernel.numpy() + d[1].bias.numpy(), 0)
        return np.mean((out - h1) ** 2)

    for stage in range(4):
        model.set_stage(stage)
        expected = pair2_mse()
        trained = {id(v) for v in model.stage_variables()}
        before = {id(v): v.numpy() for v in model.trainable_variables}
        terms = model.replica_step(x, 1.0, 0, BATCH)
        if stage == 1:
            np.testing.assert_allclose(float(terms["loss"]), expected, rtol=1e-5)
            np.testing.assert_allclose(float(terms["recon_pair2"]), expected, rtol=1e-5)
        assert set(terms) == ({"loss", "recon"} if stage == 3 else {"loss", f"recon_pair{stage + 1}"})
        moved = {id(v) for v in model.trainable_variables if not np.array_equal(before[id(v)], v.numpy())}
        assert moved == trained, stage  # exactly the stage's variables moved, the rest bit for bit not
        if stage < 3:
            layer_vars = pairs[0][stage].trainable_variables + (
                [pairs[1][stage]] if tied else pairs[1][stage].trainable_variables)
            assert trained == {id(v) for v in layer_vars}
        else:
            assert trained == {id(v) for v in model.trainable_variables}
        # The fine-tuning runs at greedy_finetune_lr_mult (0.1) times the schedule's rate.
        assert float(model.opt.learning_rate.numpy()) == pytest.approx(0.0002 if stage == 3 else 0.002)
    # The code Gaussian of samples is fitted from pair 3 on (its codes are the stack's codes).
    assert float(model.code_weight.numpy()) == pytest.approx(1 - 0.99 ** 2)


def _stage_scalars(run_dir):
    out = {}
    folder = os.path.join(run_dir, "tensorboard")
    for f in sorted(os.listdir(folder)):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, f)):
            for v in event.summary.value:
                if v.tag == "stage":
                    out[event.step] = float(tf.make_ndarray(v.tensor))
    return out


def test_greedy_run_resumes_across_stages(dataset, tmp_path, caplog):
    """Two pairs of 16 images (2 steps each), then fine-tuning; a checkpoint every step."""
    run = tmp_path / "run"
    config = AutoencoderConfig(model="ae", greedy_kimg=(0.016,), **TINY)
    first = _trainer(dataset, run, config, total=3 * BATCH, checkpoint_images=BATCH)
    with caplog.at_level("INFO"):
        first.run()
    text = caplog.text
    assert "stage 1/3 (greedy pair 1) at 0.0 kimg" in text and "stage 2/3 (greedy pair 2) at 0.0 kimg" in text
    assert "stage 1 -> 2: resetting optimizer state" in text
    assert re.search(r"kimg 0\.0/0\.0 lod 0 alpha 1\.000 stage 2/3 \(greedy pair 2\) loss \S+ recon_pair2 ", text)
    ckpt = str(run / "checkpoints" / "ckpt-{}")
    stage_of = {n: int(tf.train.load_checkpoint(ckpt.format(n)).get_tensor("stage/.ATTRIBUTES/VARIABLE_VALUE"))
                for n in (16, 24)}
    assert stage_of == {16: 0, 24: 1}  # each checkpoint knows its stage
    outer = "E/weights_by_name/dense0..kernel/.ATTRIBUTES/VARIABLE_VALUE"
    np.testing.assert_array_equal(tf.train.load_checkpoint(ckpt.format(16)).get_tensor(outer),
                                  tf.train.load_checkpoint(ckpt.format(24)).get_tensor(outer))
    assert int(first.model.opt.iterations.numpy()) == 1  # reset at pair 2, then one step
    pair2 = [v.numpy() for v in first.model.stage_variables()]
    caplog.clear()
    second = _trainer(dataset, run, config, total=7 * BATCH)
    with caplog.at_level("INFO"):
        second.run()
    text = caplog.text
    # Resumed in pair 2: its optimizer went on (no reset); then fine-tuning reset it.
    assert "stage 2/3 (greedy pair 2) at 0.0 kimg" in text and "stage 2 -> 3: resetting optimizer state" in text
    assert "stage 1 -> 2" not in text
    assert int(second.model.step.numpy()) == 7 and int(second.model.opt.iterations.numpy()) == 3
    assert second.model.stage == 2
    # The TensorBoard "stage" scalar follows the stages (1-based), written every 2 steps.
    assert _stage_scalars(str(run)) == {16: 1.0, 24: 2.0, 40: 3.0, 56: 3.0}
    assert not all(np.array_equal(a, v.numpy()) for a, v in zip(pair2, second.model.E.layer_variables(1)))


# ----------------------------------------------------------------------- CLI, export and figures

@pytest.fixture(scope="module")
def vae_run(dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("vae_cli") / "run"
    result = _train_cli("--model=vae", f"--data_dir={dataset}", f"--output_dir={run}", "--channels=1",
                        "--latent_size=4", "--ae_hidden=24", "--vae_sigma=0.3", "--batch_sizes=16",
                        "--learning_rates=0.001", "--total_kimg=0.064", "--checkpoint_kimg=0.032",
                        "--snapshot_kimg=0.064")
    assert result.returncode == 0, result.stderr[-2000:]
    return run, result


def test_cli_trains_a_vae(vae_run):
    from alae_tf import runs

    run, result = vae_run
    assert re.search(r"done: kl \S+, loss \S+, recon \S+", result.stderr)
    assert sorted(os.listdir(run / "images")) == ["reconstructions_000000kimg.png", "samples_000000kimg.png"]
    model = runs.load_run(str(run))
    assert model.config.model == "vae" and model.config.hidden == (24,) and model.config.vae_sigma == 0.3
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run / "checkpoints")))
    saved = reader.get_tensor("E/weights_by_name/dense0..kernel/.ATTRIBUTES/VARIABLE_VALUE")
    np.testing.assert_array_equal(model.E.dense[0].kernel.numpy(), saved)
    assert int(model.step.numpy()) == 4


def test_export_round_trip_and_figures(vae_run, dataset, tmp_path):
    from alae_tf import figures
    from alae_tf.export import KERAS_FILE, export
    from alae_tf.runs import load_run

    run, _ = vae_run
    model = load_run(str(run))
    written = export(model, str(tmp_path / "export"))
    assert set(written) == {"saved_model"} and not (tmp_path / "export" / KERAS_FILE).exists()
    sm = tf.saved_model.load(str(tmp_path / "export"))
    assert {"generate", "encode", "encode_float", "decode", "reconstruct", "serving_default"} <= set(sm.signatures)
    rng = np.random.default_rng(4)
    z = rng.standard_normal((3, 4)).astype(np.float32)
    images = rng.integers(0, 256, (3, 16, 16, 1)).astype(np.uint8)
    x = images.astype(np.float32) / 127.5 - 1
    sig = sm.signatures
    np.testing.assert_allclose(sig["generate"](z=tf.constant(z))["images_float"].numpy(),
                               model.generate(z).numpy(), atol=1e-5)
    np.testing.assert_allclose(sig["encode"](images=tf.constant(images))["w"].numpy(), model.encode(x).numpy(),
                               atol=1e-5)
    np.testing.assert_allclose(sig["decode"](w=tf.constant(z))["images_float"].numpy(), model.decode(z).numpy(),
                               atol=1e-5)
    rec = sig["reconstruct"](images=tf.constant(images))
    np.testing.assert_allclose(rec["images_float"].numpy(), model.reconstruct(x).numpy(), atol=1e-5)
    assert rec["images"].dtype == tf.uint8 and sm.model_name.numpy() == b"vae"

    def flags(path, **kw):
        base = dict(model=path, checkpoint=None, seed=0, count=4, truncation_psi=None, images=None,
                    data_dir=None, steps=4, sources=3, destinations=2)
        return SimpleNamespace(**{**base, **kw})

    for kind, extra, shape in [("generate", {}, (32, 32, 1)), ("reconstruct", {"data_dir": dataset}, (16, 128, 1)),
                               ("interpolate", {"data_dir": dataset}, (16, 96, 1))]:
        a = figures.make_figure(kind, flags(str(run), **extra))
        b = figures.make_figure(kind, flags(str(tmp_path / "export"), **extra))
        assert a.shape == shape and b.shape == shape, kind
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, kind
    with pytest.raises(ValueError, match=r"^stylemix needs ALAE's style model: the vae model has no styles$"):
        figures.make_figure("stylemix", flags(str(tmp_path / "export")))
    with pytest.raises(ValueError, match=r"^--truncation_psi: the vae model has no truncation \(ALAE only\)$"):
        figures.make_figure("generate", flags(str(run), truncation_psi=0.7))


def test_rae_run_loads_and_exports(dataset, tmp_path):
    from alae_tf.export import export
    from alae_tf.runs import load_run, save_config

    run = tmp_path / "run"
    config = AutoencoderConfig(**VARIANTS["rae_lstm"], **TINY)
    trainer = _trainer(dataset, run, config, total=2 * BATCH)
    save_config(str(run), config)
    trainer.run()
    model = load_run(str(run))
    assert model.config == config and isinstance(model.E, RowEncoder) and model.E.cell == "lstm"
    export(model, str(tmp_path / "export"))
    sig = tf.saved_model.load(str(tmp_path / "export")).signatures
    images = np.random.default_rng(5).integers(0, 256, (3, 16, 16, 1)).astype(np.uint8)
    x = images.astype(np.float32) / 127.5 - 1
    codes = sig["encode"](images=tf.constant(images))["w"].numpy()
    np.testing.assert_allclose(codes, trainer.model.encode(x).numpy(), atol=1e-5)
    np.testing.assert_allclose(sig["decode"](w=tf.constant(codes))["images_float"].numpy(),
                               trainer.model.decode(codes).numpy(), atol=1e-5)
    z = np.random.default_rng(6).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(sig["generate"](z=tf.constant(z))["images_float"].numpy(),
                               trainer.model.generate(z).numpy(), atol=1e-5)


# ------------------------------------------------------------------------------------------ errors

@pytest.mark.parametrize("overrides, message", [
    (dict(model="gan"), "--model must be one of ae, dae, sae, vae, rae, got 'gan'"),
    (dict(ae_arch="resnet"), "--ae_arch must be mlp or conv, got 'resnet'"),
    (dict(noise="salt"), "--noise must be gaussian or dropout, got 'salt'"),
    (dict(noise="dropout", noise_level=1.0), "--noise_level (drop probability) must be in [0, 1), got 1.0"),
    (dict(noise_level=-0.1), "--noise_level (Gaussian std) must be >= 0, got -0.1"),
    (dict(sparsity="l2"), "--sparsity must be l1 or kl, got 'l2'"),
    (dict(sparsity_target=0.0), "--sparsity_target must be in (0, 1), got 0.0"),
    (dict(sparsity_weight=-1.0), "--sparsity_weight must be >= 0, got -1.0"),
    (dict(vae_sigma=0.0), "--vae_sigma must be positive, got 0.0"),
    (dict(model="vae", tied_weights=True), "--tied_weights needs --ae_arch=mlp and --model=ae, dae or sae"),
    (dict(ae_arch="conv", tied_weights=True), "--tied_weights needs --ae_arch=mlp and --model=ae, dae or sae"),
    (dict(hidden=(0,)), "--ae_hidden must be positive layer widths, got [0]"),
    (dict(resolution=24), "--resolution must be a power of 2 of at least 4, got 24"),
    (dict(model="rae", tied_weights=True), "--tied_weights needs --ae_arch=mlp and --model=ae, dae or sae"),
    (dict(model="rae", rnn_cell="rnn"), "--rnn_cell must be one of lstm, gru, got 'rnn'"),
    (dict(model="rae", rnn_units=0), "--rnn_units must be positive, got 0"),
    (dict(model="dae", greedy_kimg=(10,)), "--greedy_kimg needs --model=ae and --ae_arch=mlp"),
    (dict(ae_arch="conv", greedy_kimg=(10,)), "--greedy_kimg needs --model=ae and --ae_arch=mlp"),
    (dict(greedy_kimg=(10, 0)), "--greedy_kimg must be positive, got [10.0, 0.0]"),
    (dict(greedy_kimg=(10,), greedy_finetune_lr_mult=0.0), "--greedy_finetune_lr_mult must be positive, got 0.0"),
    (dict(greedy_kimg=(1, 2, 3)), "--greedy_kimg has 3 values but the stack has 2 encoder/decoder pairs "
                                  "(--ae_hidden and the code); give at most 2"),
])
def test_config_errors_name_the_flag(overrides, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        AutoencoderConfig(**{**TINY, **overrides})


def test_ae_hidden_must_be_integers():
    from alae_tf import train

    train.FLAGS.unparse_flags()
    try:
        train.FLAGS(["train", "--model=ae", "--ae_hidden=512,x"])
        with pytest.raises(ValueError, match=r"^--ae_hidden must be comma-separated integers, got 512,x$"):
            train.model_config(train.FLAGS, 32, 1)
    finally:
        train.FLAGS.unparse_flags()


def test_greedy_flags_are_numbers_and_fit_the_training():
    from alae_tf import train

    train.FLAGS.unparse_flags()
    try:
        train.FLAGS(["train", "--model=ae", "--ae_hidden=64", "--greedy_kimg=50,x"])
        with pytest.raises(ValueError, match=r"^--greedy_kimg must be comma-separated numbers, got 50,x$"):
            train.model_config(train.FLAGS, 32, 1)
        train.FLAGS(["train", "--model=ae", "--ae_hidden=64", "--greedy_kimg=50,60"])
        config = train.model_config(train.FLAGS, 32, 1)
        assert config.greedy_kimg == (50.0, 60.0) and config.greedy_images == 110_000
        train.check_greedy_budget(config, 110_000)  # no fine-tuning: fits
        with pytest.raises(ValueError, match=r"^--greedy_kimg: the greedy pairs take 110 kimg \(50, 60\), more "
                                             r"than the 100 kimg of training \(--total_kimg / --epochs\)$"):
            train.check_greedy_budget(config, 100_000)
    finally:
        train.FLAGS.unparse_flags()


def test_cli_bad_flag_value_is_one_line(dataset, tmp_path):
    result = _train_cli("--model=dae", f"--data_dir={dataset}", f"--output_dir={tmp_path}", "--channels=1",
                        "--noise=salt")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: --noise must be gaussian or dropout, got 'salt'"


def test_load_config_names_an_unknown_model(tmp_path):
    from alae_tf import runs

    (tmp_path / "model.json").write_text('{"model": "gan", "latent_size": 4}')
    with pytest.raises(ValueError, match=r"^\S+model\.json: unknown model 'gan' \(known: alae_style, alae_mlp, ae, "):
        runs.load_config(str(tmp_path))
    runs.save_config(str(tmp_path), AutoencoderConfig(model="dae", **TINY))
    assert runs.load_config(str(tmp_path)) == AutoencoderConfig(model="dae", **TINY)
