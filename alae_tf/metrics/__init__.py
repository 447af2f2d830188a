"""Evaluation metrics of alae_tf (see docs/metrics.md).

- fid.py: Inception-v3 features, Fréchet distance, cached real-image features.
- lpips.py: VGG16-LPIPS from a local weights file.
- ppl.py: perceptual path length in W and Z.
- probe.py: 1-NN and linear-SVM accuracy on codes and on pixels.
- domain.py: a small classifier trained on the dataset's labels, for domain metrics.
- precision_recall.py: improved precision and recall (k = 3) in any feature space.

The command line is alae_tf/evaluate.py.
"""
