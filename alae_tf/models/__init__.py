"""The models by --model name: (model class, config class). A run directory's model.json names
its model with the same key."""
from __future__ import annotations

from alae_tf.models.alae import ALAE, ALAEConfig
from alae_tf.models.autoencoders import Autoencoder, AutoencoderConfig
from alae_tf.models.dcgan import DCGAN, DCGANConfig
from alae_tf.models.stylegan import StyleGAN, StyleGANConfig
from alae_tf.models.vaegan import VAEGAN, VAEGANConfig

MODELS = {
    "alae_style": (ALAE, ALAEConfig),
    "alae_mlp": (ALAE, ALAEConfig),
    "ae": (Autoencoder, AutoencoderConfig),
    "dae": (Autoencoder, AutoencoderConfig),
    "sae": (Autoencoder, AutoencoderConfig),
    "vae": (Autoencoder, AutoencoderConfig),
    "rae": (Autoencoder, AutoencoderConfig),
    "vaegan": (VAEGAN, VAEGANConfig),
    "dcgan": (DCGAN, DCGANConfig),
    "stylegan": (StyleGAN, StyleGANConfig),
}
