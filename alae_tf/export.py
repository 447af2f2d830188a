"""Exports a run's EMA networks as a TensorFlow SavedModel (and a .keras file).

    python -m alae_tf.export --run_dir=RUN [--output=DIR] [--checkpoint=PATH] [--keras=false]

The SavedModel holds the EMA mapping, generator and encoder at the run's top resolution, the
running average of w and deterministic (noise-free) signatures; see docs/export.md. A baseline
(ae, dae, sae, vae, ...) exports generate(z), and encode / decode / reconstruct when it has an
encoder (BaselineExportModule; no .keras file).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile

import keras
import tensorflow as tf

import alae_tf.networks.mlp  # noqa: F401  (registers the Keras layers for loading .keras files)
import alae_tf.networks.style  # noqa: F401
from alae_tf.images import to_float, to_uint8

DEFAULT_OUTPUT = "export"  # inside the run directory
KERAS_FILE = "networks.keras"


class ExportModule(tf.Module):
    """The EMA networks of an ALAE at its top LOD, with noise-free tf.functions."""

    def __init__(self, model):
        super().__init__(name="alae")
        c = model.config
        nets = model.ema
        self.F, self.G, self.E = nets.F, nets.G, nets.E
        self.lod, self._resolution = c.top_lod, int(c.resolution)
        self.w_avg = tf.Variable(model.w_avg.numpy(), trainable=False, name="w_avg")
        self.truncation_cutoff = tf.Variable(int(c.truncation_cutoff), trainable=False,
                                             name="truncation_cutoff")
        self.default_truncation_psi = tf.Variable(float(c.truncation_psi), trainable=False,
                                                  name="default_truncation_psi")
        self.num_styles = tf.Variable(int(nets.G.num_styles), trainable=False, name="num_styles")
        self.model_name = tf.Variable(c.model, trainable=False, name="model_name")
        self.channels = tf.Variable(int(c.channels), trainable=False, name="channels")
        self.resolution = tf.Variable(int(c.resolution), trainable=False, name="resolution")
        self.latent_size = tf.Variable(int(c.latent_size), trainable=False, name="latent_size")
        r, ch, lat, ns = c.resolution, c.channels, c.latent_size, nets.G.num_styles
        z_spec = tf.TensorSpec([None, lat], tf.float32, name="z")
        w_spec = tf.TensorSpec([None, lat], tf.float32, name="w")
        img_spec = tf.TensorSpec([None, r, r, ch], tf.uint8, name="images")
        fimg_spec = tf.TensorSpec([None, r, r, ch], tf.float32, name="images")
        styles_spec = tf.TensorSpec([None, ns, lat], tf.float32, name="styles")
        psi_spec = tf.TensorSpec([], tf.float32, name="truncation_psi")
        self.generate = tf.function(self._generate, input_signature=[z_spec, psi_spec])
        self.map = tf.function(self._map, input_signature=[z_spec])
        self.decode = tf.function(self._decode, input_signature=[w_spec])
        self.synthesize = tf.function(self._synthesize, input_signature=[styles_spec])
        self.synthesize_lods = tf.function(self._synthesize_lods, input_signature=[styles_spec])
        self.encode = tf.function(self._encode, input_signature=[img_spec])
        self.encode_float = tf.function(self._encode_float, input_signature=[fimg_spec])
        self.reconstruct = tf.function(self._reconstruct, input_signature=[img_spec])

    # -------------------------------------------------------------------- float building blocks
    def _tile(self, w):
        return tf.tile(w[:, None], [1, self.G.num_styles, 1])

    def _images(self, styles):
        x = self.G(styles, lod=self.lod, alpha=1.0, noise=False)
        return {"images": to_uint8(x), "images_float": tf.cast(x, tf.float32)}

    # -------------------------------------------------------------------- signatures
    def _generate(self, z, truncation_psi):
        styles = self._tile(self.F(z))
        slots = tf.range(self.G.num_styles)
        psi = tf.where(slots < self.truncation_cutoff, truncation_psi, 1.0)
        styles = self.w_avg + (styles - self.w_avg) * psi[None, :, None]
        return self._images(styles)

    def _map(self, z):
        return {"w": self.F(z)}

    def _decode(self, w):
        return self._images(self._tile(w))

    def _synthesize(self, styles):
        return self._images(styles)

    def _synthesize_lods(self, styles):
        """{"r4": images, "r8": ...}: G's float images at every LOD of the progressive growth,
        each from the style slots that LOD uses."""
        return {f"r{self._resolution >> (self.lod - lod)}": tf.cast(self.G(styles, lod=lod, alpha=1.0, noise=False), tf.float32)
                for lod in range(self.lod + 1)}

    def _encode(self, images):
        return {"w": self.E(to_float(images), lod=self.lod, alpha=1.0)}

    def _encode_float(self, images):
        return {"w": self.E(images, lod=self.lod, alpha=1.0)}

    def _reconstruct(self, images):
        return self._decode(self._encode(images)["w"])

    def signatures(self) -> dict:
        return {"generate": self.generate, "map": self.map, "decode": self.decode,
                "synthesize": self.synthesize, "encode": self.encode,
                "encode_float": self.encode_float, "reconstruct": self.reconstruct,
                "serving_default": self.reconstruct}


class BaselineExportModule(tf.Module):
    """A baseline model's inference functions (its ``generate``, ``encode``, ``decode``) as
    signatures with ALAE's names: generate(z); map(z) -> w and decode(w) when it has a mapping
    network (StyleGAN); encode(images) -> w (the model's code), encode_float, decode(w),
    reconstruct(images) and serving_default = reconstruct when it can encode, else
    serving_default = generate."""

    def __init__(self, model):
        super().__init__(name="baseline")
        c = model.config
        self._model = model
        # The model's state without its optimizers: every variable the functions read.
        self.state = {k: v for k, v in model.checkpoint_items().items()
                      if not isinstance(v, keras.optimizers.Optimizer)}
        self.model_name = tf.Variable(c.model, trainable=False, name="model_name")
        self.can_encode = tf.Variable(bool(model.can_encode), trainable=False, name="can_encode")
        self.resolution = tf.Variable(int(c.resolution), trainable=False, name="resolution")
        self.channels = tf.Variable(int(c.channels), trainable=False, name="channels")
        self.latent_size = tf.Variable(int(c.latent_size), trainable=False, name="latent_size")
        r, ch, lat = c.resolution, c.channels, c.latent_size
        z_spec = tf.TensorSpec([None, lat], tf.float32, name="z")
        self.generate = tf.function(self._generate, input_signature=[z_spec])
        self._signatures = {"generate": self.generate, "serving_default": self.generate}
        self._mapping = getattr(getattr(model, "ema", None), "F", None)
        if self._mapping is not None or model.can_encode:
            self.decode = tf.function(self._decode, input_signature=[
                tf.TensorSpec([None, lat], tf.float32, name="w")])
            self._signatures["decode"] = self.decode
        if self._mapping is not None:
            self.map = tf.function(self._map, input_signature=[z_spec])
            self._signatures["map"] = self.map
        if model.can_encode:
            img_spec = tf.TensorSpec([None, r, r, ch], tf.uint8, name="images")
            self.encode = tf.function(self._encode, input_signature=[img_spec])
            self.encode_float = tf.function(self._encode_float, input_signature=[
                tf.TensorSpec([None, r, r, ch], tf.float32, name="images")])
            self.reconstruct = tf.function(self._reconstruct, input_signature=[img_spec])
            self._signatures.update(encode=self.encode, encode_float=self.encode_float,
                                    reconstruct=self.reconstruct, serving_default=self.reconstruct)

    @staticmethod
    def _images(x):
        return {"images": to_uint8(x), "images_float": tf.cast(x, tf.float32)}

    def _generate(self, z):
        return self._images(self._model.generate(z, truncation=False, noise=False))

    def _map(self, z):
        return {"w": tf.cast(self._mapping(z), tf.float32)}

    def _encode(self, images):
        return {"w": tf.cast(self._model.encode(to_float(images)), tf.float32)}

    def _encode_float(self, images):
        return {"w": tf.cast(self._model.encode(images), tf.float32)}

    def _decode(self, w):
        return self._images(self._model.decode(w))

    def _reconstruct(self, images):
        return self._decode(self._encode(images)["w"])

    def signatures(self) -> dict:
        return dict(self._signatures)


@keras.saving.register_keras_serializable(package="alae_tf")
class ALAEReconstructor(keras.Model):
    """The EMA encoder and generator at one LOD: float images [-1, 1] -> {w, reconstruction}.

    ``build`` runs both networks at every LOD up to ``lod`` so that every sub-layer (the
    lower LODs' from_rgb / to_rgb and noise layers included) exists when a .keras file loads."""

    def __init__(self, encoder, generator, lod: int, latent_size: int, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.generator = encoder, generator
        self.lod, self.latent_size = int(lod), int(latent_size)

    def build(self, input_shape):
        styles = keras.ops.zeros((1, self.generator.num_styles, self.latent_size))
        for lod in range(self.lod + 1):
            self.encoder(self.generator(styles, lod=lod, alpha=0.5, noise=True), lod=lod, alpha=0.5)
        self.built = True

    def call(self, images):
        w = self.encoder(images, lod=self.lod, alpha=1.0)
        styles = keras.ops.repeat(keras.ops.expand_dims(w, 1), self.generator.num_styles, axis=1)
        return {"w": w, "reconstruction": self.generator(styles, lod=self.lod, alpha=1.0, noise=False)}

    def get_config(self):
        return {**super().get_config(), "lod": self.lod, "latent_size": self.latent_size,
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "generator": keras.saving.serialize_keras_object(self.generator)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        return cls(**config)


def keras_model(model) -> ALAEReconstructor:
    """The run's EMA encoder + generator at its top LOD as a Keras model (float images [-1, 1])."""
    c = model.config
    out = ALAEReconstructor(model.ema.E, model.ema.G, c.top_lod, c.latent_size, name="alae_reconstruct")
    out(keras.ops.zeros((1, c.resolution, c.resolution, c.channels)))
    return out


def module_of(model) -> tf.Module:
    """The export's functions of a model of alae_tf.runs.load_run (ALAE or a baseline)."""
    from alae_tf.models.alae import ALAE

    return ExportModule(model) if isinstance(model, ALAE) else BaselineExportModule(model)


def export(model, output: str, keras_file: bool = True) -> dict:
    """Writes the SavedModel to ``output`` (replacing it atomically); returns what it wrote.
    ``keras_file``: also the .keras file of ALAE's encoder + generator (ALAE only)."""
    output = os.path.abspath(output)
    parent = os.path.dirname(output)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    written = {"saved_model": output}
    try:
        module = module_of(model)
        tf.saved_model.save(module, tmp, signatures=module.signatures())
        if keras_file and isinstance(module, ExportModule):
            keras_model(model).save(os.path.join(tmp, KERAS_FILE))
            written["keras"] = os.path.join(output, KERAS_FILE)
        if os.path.exists(output):
            old = output + ".old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(output, old)
            os.replace(tmp, output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written


def main(argv):
    from absl import flags

    from alae_tf.runs import load_run

    FLAGS = flags.FLAGS
    if len(argv) > 1:
        print(f"error: unexpected arguments {' '.join(argv[1:])}", file=sys.stderr)
        sys.exit(1)
    if not FLAGS.run_dir:
        print("error: --run_dir is required", file=sys.stderr)
        sys.exit(1)
    try:
        model = load_run(FLAGS.run_dir, FLAGS.checkpoint)
        output = FLAGS.output or os.path.join(FLAGS.run_dir, DEFAULT_OUTPUT)
        written = export(model, output, keras_file=FLAGS.keras)
    except (ValueError, OSError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        sys.exit(1)
    for kind, path in written.items():
        print(f"wrote {kind}: {path}")


def _define_flags():
    from absl import flags

    flags.DEFINE_string("run_dir", None, "run directory of alae_tf.train")
    flags.DEFINE_string("output", None, f"SavedModel folder (default RUN/{DEFAULT_OUTPUT})")
    flags.DEFINE_string("checkpoint", None, "checkpoint path (default: the latest)")
    flags.DEFINE_bool("keras", True, f"also write {KERAS_FILE} (EMA encoder + generator) in it")


def run():
    from tfrecords_tools import cli

    _define_flags()
    cli.run(main, __name__)


if __name__ == "__main__":
    run()
