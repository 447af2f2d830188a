"""Multi-LOD TFRecord datasets in the StyleGAN / ALAE-release format: convert and inspect."""

__version__ = "0.1.0"
