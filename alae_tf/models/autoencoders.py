"""The autoencoder baselines of the textbook chapter (Goodfellow et al., Deep Learning, ch. 14)
and the VAE (Kingma & Welling 2014).

- ``ae``: undercomplete autoencoder, loss = per-pixel mean squared error ||x - g(f(x))||^2 / P;
  MLP (stacked, optionally with tied weights) or convolutional.
- ``dae``: denoising: the same loss on g(f(x~)), x~ = x + sigma * eps (``gaussian``) or
  x * m / (1 - p), m ~ Bernoulli(1 - p) (``dropout``).
- ``sae``: sparse: loss + lambda * Omega(h); ``l1``: Omega = sum_j |h_j| on a linear code;
  ``kl``: Omega = sum_j KL(rho || rho_hat_j) on a sigmoid code, rho_hat the code's mean over the
  GLOBAL batch (all-reduced across replicas).
- ``vae``: encoder -> (mu, log sigma^2); z = mu + exp(log sigma^2 / 2) * eps; loss (negative ELBO
  up to a constant) = ||x - g(z)||^2 / (2 sigma_x^2) + KL(q(z|x) || N(0, I)) in closed form.
- ``rae``: recurrent (sequence-to-vector and vector-to-sequence RNNs, ch. 10): the ``ae`` loss,
  the encoder an LSTM or GRU reading the image as a sequence of rows, the decoder one that repeats
  the code over the rows and writes them back (alae_tf.networks.recurrent, any sequences).

Greedy layer-wise training (``ae`` with ``greedy_kimg``, sec. 15.1): the MLP stack trains one
encoder/decoder pair at a time, outer first, each for its ``greedy_kimg`` thousand images: pair k's
encoder layer and the decoder layer that mirrors it reconstruct the codes of pair k - 1 (pair 1:
the pixels; loss: the per-unit MSE), every other layer frozen. The stack the pairs make (encoder
layers in order, decoder layers in reverse) is the ``ae`` network itself; the rest of the run
fine-tunes it end to end with the ``ae`` loss. Stage s < pairs is pair s + 1; stage ``pairs`` is
the fine-tuning (alae_tf.models.base: the loop builds a step per stage and resets the optimizer
between stages).

Samples: the VAE decodes z ~ N(0, I). A deterministic autoencoder has no prior over its codes;
it decodes ``mean + A z`` with ``A A^T = cov``, the full-covariance Gaussian of the codes of
(clean) training images, tracked during training as exponential moving averages (decay
``code_decay`` per step, bias-corrected) of the batch mean and second moment. It is model state,
saved in checkpoints.

All noise (the DAE's corruption, the VAE's eps) is drawn for the global batch (alae_tf.models.base).
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from alae_tf import losses
from alae_tf.models.base import Model, ModelConfig, average, loss_scaled
from alae_tf.networks.autoencoders import ConvDecoder, ConvEncoder, DenseDecoder, DenseEncoder
from alae_tf.networks.recurrent import CELLS, RowDecoder, RowEncoder

MODELS = ("ae", "dae", "sae", "vae", "rae")
_NOISE, _EPS = range(2)  # purposes folded into the per-step seed


@dataclasses.dataclass
class AutoencoderConfig(ModelConfig):
    """Architecture and objective of one autoencoder baseline."""

    model: str = "ae"  # ae | dae | sae | vae | rae
    channels: int = 1
    latent_size: int = 50
    ae_arch: str = "mlp"  # mlp | conv
    hidden: tuple[int, ...] = (1024, 1024)
    start_channels: int = 32
    max_channels: int = 256
    tied_weights: bool = False
    noise: str = "gaussian"  # dae: gaussian | dropout
    noise_level: float = 0.25
    sparsity: str = "l1"  # sae: l1 | kl
    sparsity_weight: float = 1e-3
    sparsity_target: float = 0.05
    vae_sigma: float = 0.2
    code_decay: float = 0.99
    rnn_cell: str = "lstm"  # rae: lstm | gru
    rnn_units: int = 256  # rae: units of the encoder's and the decoder's RNN
    greedy_kimg: tuple[float, ...] = ()  # ae mlp: kimg per encoder/decoder pair, outer first; (): end to end
    greedy_finetune_lr_mult: float = 0.1  # the fine-tuning after greedy pairs: learning rate x this

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
        self.greedy_kimg = tuple(float(k) for k in self.greedy_kimg)
        if self.model not in MODELS:
            raise ValueError(f"--model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.ae_arch not in ("mlp", "conv"):
            raise ValueError(f"--ae_arch must be mlp or conv, got {self.ae_arch!r}")
        if self.resolution < 4 or self.resolution & (self.resolution - 1):
            raise ValueError(f"--resolution must be a power of 2 of at least 4, got {self.resolution}")
        super().__post_init__()
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"--ae_hidden must be positive layer widths, got {list(self.hidden)}")
        if self.start_channels < 1 or self.max_channels < 1:
            raise ValueError(f"--start_channels and --max_channels must be positive, got "
                             f"{self.start_channels} and {self.max_channels}")
        if self.tied_weights and (self.ae_arch != "mlp" or self.model in ("vae", "rae")):
            raise ValueError("--tied_weights needs --ae_arch=mlp and --model=ae, dae or sae")
        if self.noise not in ("gaussian", "dropout"):
            raise ValueError(f"--noise must be gaussian or dropout, got {self.noise!r}")
        if self.noise == "gaussian" and self.noise_level < 0:
            raise ValueError(f"--noise_level (Gaussian std) must be >= 0, got {self.noise_level}")
        if self.noise == "dropout" and not 0.0 <= self.noise_level < 1.0:
            raise ValueError(f"--noise_level (drop probability) must be in [0, 1), got {self.noise_level}")
        if self.sparsity not in ("l1", "kl"):
            raise ValueError(f"--sparsity must be l1 or kl, got {self.sparsity!r}")
        if self.sparsity_weight < 0:
            raise ValueError(f"--sparsity_weight must be >= 0, got {self.sparsity_weight}")
        if not 0.0 < self.sparsity_target < 1.0:
            raise ValueError(f"--sparsity_target must be in (0, 1), got {self.sparsity_target}")
        if self.vae_sigma <= 0:
            raise ValueError(f"--vae_sigma must be positive, got {self.vae_sigma}")
        if not 0.0 <= self.code_decay < 1.0:
            raise ValueError(f"code_decay must be in [0, 1), got {self.code_decay}")
        if self.jit and self.model == "sae" and self.sparsity == "kl":
            raise ValueError("--jit does not support --sparsity=kl (its batch mean is all-reduced)")
        if self.rnn_cell not in CELLS:
            raise ValueError(f"--rnn_cell must be one of {', '.join(CELLS)}, got {self.rnn_cell!r}")
        if self.rnn_units < 1:
            raise ValueError(f"--rnn_units must be positive, got {self.rnn_units}")
        if self.greedy_kimg:
            pairs = len(self.hidden) + 1
            if self.model != "ae" or self.ae_arch != "mlp":
                raise ValueError("--greedy_kimg needs --model=ae and --ae_arch=mlp")
            if min(self.greedy_kimg) <= 0:
                raise ValueError(f"--greedy_kimg must be positive, got {list(self.greedy_kimg)}")
            if len(self.greedy_kimg) > pairs:
                raise ValueError(f"--greedy_kimg has {len(self.greedy_kimg)} values but the stack has {pairs} "
                                 f"encoder/decoder pairs (--ae_hidden and the code); give at most {pairs}")
            if self.greedy_finetune_lr_mult <= 0:
                raise ValueError(f"--greedy_finetune_lr_mult must be positive, got {self.greedy_finetune_lr_mult}")
            # A shorter list repeats its last value (like --batch_sizes).
            self.greedy_kimg += (self.greedy_kimg[-1],) * (pairs - len(self.greedy_kimg))

    @property
    def kl_sparsity(self) -> bool:
        return self.model == "sae" and self.sparsity == "kl"

    @property
    def greedy_images(self) -> int:
        """Images of the greedy stages together (0: trained end to end)."""
        return round(sum(self.greedy_kimg) * 1000)


def make_networks(c: AutoencoderConfig, prefix: str = "") -> tuple[keras.layers.Layer, keras.layers.Layer]:
    """(encoder, decoder) of the config, built."""
    code_size = 2 * c.latent_size if c.model == "vae" else c.latent_size
    activation = "sigmoid" if c.kl_sparsity else "linear"
    if c.model == "rae":
        enc = RowEncoder(c.resolution, c.channels, c.rnn_units, code_size, c.rnn_cell, name=f"{prefix}encoder")
        dec = RowDecoder(c.resolution, c.channels, c.rnn_units, c.latent_size, c.rnn_cell, name=f"{prefix}decoder")
    elif c.ae_arch == "mlp":
        enc = DenseEncoder(c.resolution, c.channels, c.hidden, code_size, activation, name=f"{prefix}encoder")
        dec = DenseDecoder(c.resolution, c.channels, c.hidden, c.latent_size, tied=c.tied_weights,
                           name=f"{prefix}decoder")
    else:
        kw = dict(start_channels=c.start_channels, max_channels=c.max_channels)
        enc = ConvEncoder(c.resolution, c.channels, code_size, code_activation=activation, **kw,
                          name=f"{prefix}encoder")
        dec = ConvDecoder(c.resolution, c.channels, c.latent_size, **kw, name=f"{prefix}decoder")
    enc.build((None, c.resolution, c.resolution, c.channels))
    dec.build((None, c.latent_size))
    return enc, dec


class Autoencoder(Model):
    """ae / dae / sae / vae / rae: encoder, decoder, one Adam, the step counter and the code
    Gaussian; ae's greedy stages (``greedy_kimg``)."""

    def __init__(self, config: AutoencoderConfig, learning_rate: float = 1e-3):
        super().__init__(config)
        c = config
        self._learning_rate = learning_rate  # the schedule's, before the fine-tuning multiplier
        self.E, self.D = make_networks(c)
        # Exponential moving averages of the codes' mean and second moment, and of 1 (the bias
        # correction): mean = code_sum / code_weight, E[h h^T] = code_moment / code_weight.
        mean_kw = dict(trainable=False, aggregation=tf.VariableAggregation.MEAN)
        self.code_sum = tf.Variable(tf.zeros([c.latent_size]), name="code_sum", **mean_kw)
        self.code_moment = tf.Variable(tf.zeros([c.latent_size, c.latent_size]), name="code_moment", **mean_kw)
        self.code_weight = tf.Variable(0.0, name="code_weight", **mean_kw)
        self.opt = loss_scaled(keras.optimizers.Adam(learning_rate=learning_rate), c.mixed_precision)
        self.opt.build(self.trainable_variables)

    @property
    def trainable_variables(self) -> list[tf.Variable]:
        return self.E.trainable_variables + self.D.trainable_variables

    def networks(self) -> dict[str, keras.layers.Layer]:
        return {"E": self.E, "D": self.D}

    @property
    def optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        return {"opt": self.opt}

    def state_variables(self) -> dict[str, tf.Variable]:
        return {"code_sum": self.code_sum, "code_moment": self.code_moment, "code_weight": self.code_weight}

    def corrupt(self, images, global_batch: int):
        """The DAE's corruption of this replica's images (drawn for the global batch)."""
        c = self.config
        if c.noise == "gaussian":
            return images + c.noise_level * self._normal(_NOISE, global_batch, images.shape[1:])
        shape = [global_batch] + list(images.shape[1:])
        u = self._replica_slice(tf.random.stateless_uniform(shape, self._seed(_NOISE)), global_batch)
        keep = tf.cast(u >= c.noise_level, images.dtype)
        return images * keep / (1.0 - c.noise_level)

    # ----------------------------------------------------------------------------- greedy stages
    def stage_names(self) -> list[str]:
        pairs = len(self.config.greedy_kimg)
        if not pairs:
            return [""]
        return [f"greedy pair {k}" for k in range(1, pairs + 1)] + ["fine-tune"]

    def stage_at(self, images_seen: int) -> int:
        end = 0.0
        for pair, kimg in enumerate(self.config.greedy_kimg):
            end += kimg * 1000
            if images_seen < round(end):
                return pair
        return len(self.config.greedy_kimg)

    def set_stage(self, stage: int):
        super().set_stage(stage)
        self.set_learning_rate(self._learning_rate)

    def set_learning_rate(self, lr: float):
        """The schedule's rate; the fine-tuning after greedy pairs runs at ``greedy_finetune_lr_mult``
        times it (a fresh Adam's first steps move every weight by about the rate at once, which
        at the full rate undid the assembled stack: MSE 0.12 -> 13 in one step)."""
        self._learning_rate = lr
        fine_tuning = self.config.greedy_kimg and self.greedy_pair is None
        super().set_learning_rate(lr * (self.config.greedy_finetune_lr_mult if fine_tuning else 1.0))

    @property
    def greedy_pair(self) -> int | None:
        """The pair (0: outer) the current stage trains; None when the whole stack trains."""
        return self.stage if self.stage < len(self.config.greedy_kimg) else None

    def stage_variables(self) -> list[tf.Variable]:
        """What the current stage trains: one pair (its encoder layer, the decoder layer that mirrors
        it), or everything."""
        pair = self.greedy_pair
        if pair is None:
            return self.trainable_variables
        return self.E.layer_variables(pair) + self.D.layer_variables(len(self.config.hidden) - pair)

    def _pair_grads(self, reals, global_batch: int, pair: int):
        """Greedy stage of ``pair``: its two layers reconstruct the frozen codes below it."""
        c = self.config
        variables = self.stage_variables()
        x = self.E.flatten(tf.cast(reals, tf.float32))
        for i in range(pair):
            x = self.E.layer(i, x)
        x = tf.stop_gradient(x)
        target = tf.cast(x, tf.float32)
        kernel = self.E.kernels()[pair] if c.tied_weights else None
        with tf.GradientTape() as tape:
            codes = self.E.layer(pair, x)
            out = tf.cast(self.D.layer(len(c.hidden) - pair, codes, kernel=kernel), tf.float32)
            loss = average(tf.reduce_mean(tf.square(out - target), axis=1), global_batch)
            scaled = self.opt.scale_loss(loss) if c.mixed_precision else loss
        grads = tape.gradient(scaled, variables)
        terms = {"loss": loss, f"recon_pair{pair + 1}": loss}
        # The innermost pair's codes are the stack's codes: the code Gaussian starts fitting here.
        return terms, grads, (tf.cast(codes, tf.float32) if pair == len(c.hidden) else None)

    # ----------------------------------------------------------------------------- networks
    def _decode(self, codes):
        if self.config.tied_weights:
            return self.D(codes, kernels=self.E.kernels())
        return self.D(codes)

    def _split(self, encoded):
        """A VAE encoder's output -> (mean, log-variance), float32."""
        encoded = tf.cast(encoded, tf.float32)
        return encoded[:, :self.config.latent_size], encoded[:, self.config.latent_size:]

    # ----------------------------------------------------------------------------- training
    def _grads(self, reals, global_batch: int):
        c = self.config
        reals = tf.cast(reals, tf.float32)
        variables = self.trainable_variables
        terms = {}
        with tf.GradientTape() as tape:
            inputs = self.corrupt(reals, global_batch) if c.model == "dae" else reals
            encoded = self.E(inputs)
            if c.model == "vae":
                mean, log_var = self._split(encoded)
                z = mean + tf.exp(0.5 * log_var) * self._normal(_EPS, global_batch)
                fakes = tf.cast(self._decode(z), tf.float32)
                squared = tf.reduce_sum(tf.square(fakes - reals), axis=[1, 2, 3])
                kl = losses.gaussian_kl(mean, log_var)
                per_example = squared / (2.0 * c.vae_sigma ** 2) + kl
                terms["kl"] = average(kl, global_batch)
                pixels = float(reals.shape[1] * reals.shape[2] * reals.shape[3])
                mse = squared / pixels
                codes = None
            else:
                codes = tf.cast(encoded, tf.float32)
                fakes = tf.cast(self._decode(encoded), tf.float32)
                mse = tf.reduce_mean(tf.square(fakes - reals), axis=[1, 2, 3])
                per_example = mse
                if c.model == "sae" and c.sparsity == "l1":
                    omega = losses.l1_sparsity(codes)
                    per_example = mse + c.sparsity_weight * omega
                    terms["sparsity"] = average(omega, global_batch)
            loss = average(per_example, global_batch)
            if c.kl_sparsity:
                # rho_hat over the global batch; every replica adds omega / replicas, so the SUM
                # over replicas is omega (all_reduce's gradient all-reduces the gradients back).
                ctx = tf.distribute.get_replica_context()
                rho_hat = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(codes, axis=0)) / global_batch
                omega = losses.kl_sparsity(c.sparsity_target, rho_hat) / ctx.num_replicas_in_sync
                terms["sparsity"] = omega
                loss = loss + c.sparsity_weight * omega
            scaled = self.opt.scale_loss(loss) if c.mixed_precision else loss
        grads = tape.gradient(scaled, variables)
        terms["recon"] = average(mse, global_batch)
        terms["loss"] = loss
        if c.model == "dae":  # the Gaussian of samples is fitted to codes of clean images
            codes = tf.cast(self.E(reals), tf.float32)
        return terms, grads, codes

    def update_code_stats(self, codes):
        """One EMA step of the code Gaussian with this replica's codes (replicas average)."""
        d = self.config.code_decay
        codes = tf.stop_gradient(tf.cast(codes, tf.float32))
        n = tf.cast(tf.shape(codes)[0], tf.float32)
        self.code_sum.assign(self.code_sum * d + (1.0 - d) * tf.reduce_mean(codes, axis=0))
        self.code_moment.assign(self.code_moment * d
                                + (1.0 - d) * tf.matmul(codes, codes, transpose_a=True) / n)
        self.code_weight.assign(self.code_weight * d + (1.0 - d))

    def replica_step(self, reals, alpha, lod: int, global_batch: int) -> dict:
        """One Adam step on this replica's reals (alpha and lod unused: one resolution) for the
        variables of the current stage (a greedy pair, or all)."""
        pair = self.greedy_pair
        if pair is None:
            terms, grads, codes = self._compiled(self._grads, global_batch=global_batch)(reals)
        else:
            terms, grads, codes = self._compiled(self._pair_grads, global_batch=global_batch, pair=pair)(reals)
        self.opt.apply_gradients(zip(grads, self.stage_variables()))
        if codes is not None:
            self.update_code_stats(codes)
        return terms

    # ----------------------------------------------------------------------------- inference
    def code_gaussian(self):
        """(mean, A) of the fitted code Gaussian, A A^T = covariance; (0, I) before training."""
        w = self.code_weight
        safe = tf.maximum(w, 1e-12)
        mean = self.code_sum / safe
        cov = self.code_moment / safe - mean[:, None] * mean[None, :]
        cov = 0.5 * (cov + tf.transpose(cov))
        s, u = tf.linalg.eigh(cov)
        scale = u * tf.sqrt(tf.maximum(s, 0.0))[None, :]
        eye = tf.eye(self.config.latent_size)
        return tf.where(w > 0, mean, 0.0), tf.where(w > 0, scale, eye)

    def prior_codes(self, z):
        """z ~ N(0, I) -> codes the decoder is given for samples."""
        z = tf.cast(z, tf.float32)
        if self.config.model == "vae":
            return z
        mean, scale = self.code_gaussian()
        return mean + tf.matmul(z, scale, transpose_b=True)

    def generate(self, z, **unused):
        return self.decode(self.prior_codes(z))

    def encode(self, images, **unused):
        """Codes of images in [-1, 1] (the VAE: the posterior mean)."""
        encoded = self.E(tf.cast(images, tf.float32))
        if self.config.model == "vae":
            return self._split(encoded)[0]
        return tf.cast(encoded, tf.float32)

    def decode(self, codes, **unused):
        return tf.cast(self._decode(tf.cast(codes, self.E.compute_dtype)), tf.float32)
