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

MODELS = ("ae", "dae", "sae", "vae")
_NOISE, _EPS = range(2)  # purposes folded into the per-step seed


@dataclasses.dataclass
class AutoencoderConfig(ModelConfig):
    """Architecture and objective of one autoencoder baseline."""

    model: str = "ae"  # ae | dae | sae | vae
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

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
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
        if self.tied_weights and (self.ae_arch != "mlp" or self.model == "vae"):
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

    @property
    def kl_sparsity(self) -> bool:
        return self.model == "sae" and self.sparsity == "kl"


def make_networks(c: AutoencoderConfig, prefix: str = "") -> tuple[keras.layers.Layer, keras.layers.Layer]:
    """(encoder, decoder) of the config, built."""
    code_size = 2 * c.latent_size if c.model == "vae" else c.latent_size
    activation = "sigmoid" if c.kl_sparsity else "linear"
    if c.ae_arch == "mlp":
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
    """ae / dae / sae / vae: encoder, decoder, one Adam, the step counter and the code Gaussian."""

    def __init__(self, config: AutoencoderConfig, learning_rate: float = 1e-3):
        super().__init__(config)
        c = config
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
        """One Adam step on this replica's reals (alpha and lod unused: one resolution)."""
        terms, grads, codes = self._compiled(self._grads, global_batch=global_batch)(reals)
        self.opt.apply_gradients(zip(grads, self.trainable_variables))
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
