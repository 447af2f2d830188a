"""Multi-LOD TFRecord datasets in the StyleGAN / ALAE-release format: convert and inspect."""

# The one version of the alae_tf distribution (pyproject.toml reads it; alae_tf re-exports it).
__version__ = "0.1.0"
