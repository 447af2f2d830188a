"""What every model shares (alae_tf.models.base): the step on 1 and 2 replicas, and the config
each --model gets from the flags."""
import math
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from alae_tf.models import MODELS
from alae_tf.models.alae import ALAE, ALAEConfig
from alae_tf.models.autoencoders import Autoencoder, AutoencoderConfig
from alae_tf.models.dcgan import DCGAN, DCGANConfig

TINY_AE = dict(resolution=16, channels=1, latent_size=4, hidden=(24,), start_channels=4, max_channels=8)
BATCH = 8

# model, {optimizer attribute: networks it trains}, image size. The replica tests swap Adam for
# SGD: Adam's first steps are ~ lr * sign(g), and float noise on near-zero gradients flips signs.
REPLICA_CASES = {
    "alae_mlp": (lambda: ALAE(ALAEConfig(model="alae_mlp", resolution=8, channels=1, latent_size=6,
                                         mapping_layers=2, mlp_hidden=(16, 12))),
                 {"opt_e": ["E"], "opt_d": ["D"], "opt_fg": ["F", "G"]}, 8),
    "dcgan": (lambda: DCGAN(DCGANConfig(resolution=16, channels=1, latent_size=6, start_channels=8,
                                        max_channels=32)), {"opt_g": ["G"], "opt_d": ["D"]}, 16),
    # DAE noise and KL sparsity's batch mean are drawn / all-reduced over the global batch.
    "dae": (lambda: Autoencoder(AutoencoderConfig(model="dae", **TINY_AE)), {"opt": ["E", "D"]}, 16),
    "sae_kl": (lambda: Autoencoder(AutoencoderConfig(model="sae", sparsity="kl", **TINY_AE)),
               {"opt": ["E", "D"]}, 16),
}


def _state(model) -> dict[str, tf.Variable]:
    """Every checkpointed variable but the optimizers' (networks, EMA, w average, code statistics)."""
    out = {}
    for key, item in model.checkpoint_items().items():
        if hasattr(item, "weights_by_name"):
            out.update({f"{key}/{k}": v for k, v in item.weights_by_name.items()})
        elif isinstance(item, tf.Variable):
            out[key] = item
    return out


@pytest.mark.parametrize("name", sorted(REPLICA_CASES))
def test_two_replicas_equal_one_replica(name, two_replicas):
    """The same global batch on 1 and 2 replicas: the same loss terms at every step, the same
    weights after three steps (batch-norm statistics, EMA and the rest of the state included), and
    the two replicas stay identical."""
    make, groups, size = REPLICA_CASES[name]
    reals = tf.constant(np.random.default_rng(5).uniform(-1, 1, (3, BATCH, size, size, 1)), tf.float32)
    keras.utils.set_random_seed(0)  # a rare draw of unseeded tiny networks diverged under SGD
    results, initial = {}, None
    for run, strategy in [("one", tf.distribute.get_strategy()), ("two", two_replicas)]:
        with strategy.scope():
            model = make()
            for attr, nets in groups.items():
                opt = keras.optimizers.SGD(0.05)
                opt.build([v for n in nets for v in model.networks()[n].trainable_variables])
                setattr(model, attr, opt)
        state = _state(model)
        if initial is None:
            initial = {k: v.numpy() for k, v in state.items()}
        for k, v in state.items():
            v.assign(initial[k])

        @tf.function
        def step(x, model=model, strategy=strategy):
            terms = strategy.run(model.replica_step, args=(x, tf.constant(1.0)),
                                 kwargs=dict(lod=0, global_batch=BATCH))
            model.after_step(BATCH)
            return {k: strategy.reduce("SUM", v, axis=None) for k, v in terms.items()}

        terms = []
        for i in range(3):
            n = strategy.num_replicas_in_sync

            def value_fn(ctx, i=i, n=n):
                local = BATCH // n
                return reals[i, ctx.replica_id_in_sync_group * local:(ctx.replica_id_in_sync_group + 1) * local]

            terms.append({k: float(v) for k, v in step(strategy.experimental_distribute_values_from_function(
                value_fn)).items()})
        results[run] = terms, {k: v.numpy() for k, v in state.items()}
        if run == "two":
            for net in model.networks().values():
                for v in net.trainable_variables:
                    replicas = [x.numpy() for x in v.value.values]
                    np.testing.assert_array_equal(replicas[0], replicas[1], err_msg=v.path)
    (one_terms, one_state), (two_terms, two_state) = results["one"], results["two"]
    for i, (a, b) in enumerate(zip(one_terms, two_terms)):
        assert a.keys() == b.keys()
        for k in a:
            assert math.isfinite(a[k]), (i, k)
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), (i, k)
    for k in one_state:
        np.testing.assert_allclose(two_state[k], one_state[k], rtol=1e-4, atol=1e-5, err_msg=k)
    for net in model.networks():  # every network trained
        assert any(not np.array_equal(initial[k], one_state[k]) for k in one_state if k.startswith(f"{net}/")), net


@pytest.mark.parametrize("name", list(MODELS))
def test_config_takes_each_flag_of_its_fields(name):
    """model_config: every config field from the flag of the same name; the resolution, the layer
    count, the loss scaling and the autoencoders' hidden widths derived."""
    from alae_tf import train

    argv = ["train", f"--model={name}", "--latent_size=7", "--channels=1", "--seed=3", "--jit", "--r1_gamma=2.5",
            "--start_channels=8", "--ae_hidden=24,12", "--noise=dropout", "--margin=0.1", "--layer_count=3"]
    resolution = {"vaegan": 32}.get(name, 16)
    train.FLAGS.unparse_flags()
    try:
        train.FLAGS(argv)
        config = train.model_config(train.FLAGS, resolution, 3)
    finally:
        train.FLAGS.unparse_flags()
    assert type(config) is MODELS[name][1] and config.model == name
    assert (config.resolution, config.latent_size, config.channels, config.seed, config.jit) == (resolution, 7, 1, 3,
                                                                                                 True)
    assert not config.mixed_precision
    expected = dict(r1_gamma=2.5, start_channels=8, hidden=(24, 12), noise="dropout", margin=0.1, layer_count=3)
    for field, value in expected.items():
        if hasattr(config, field):
            assert getattr(config, field) == value, field


@pytest.mark.parametrize("name", list(MODELS))
def test_every_config_checks_the_common_fields(name):
    config_cls = MODELS[name][1]
    config_cls(model=name)  # the defaults are valid
    for field, value, message in [("channels", 2, "--channels must be 1 or 3, got 2"),
                                  ("latent_size", 0, "--latent_size must be at least 1, got 0")]:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            config_cls(model=name, **{field: value})
