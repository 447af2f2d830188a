"""Progressive-growing schedule: images seen -> (lod, alpha, batch size, learning rate).

The ALAE release counts in epochs: every LOD lasts ``epochs_per_lod`` epochs and each LOD above 0
starts with a transition of half that length, during which the new block fades in with a cosine
ramp. ``kimg_per_lod`` expresses the same schedule in thousands of images; ``fade="linear"`` gives
StyleGAN's linear fade-in.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence


@dataclasses.dataclass(frozen=True)
class Phase:
    """The training state at a given number of images seen."""

    lod: int
    alpha: float
    batch_size: int
    learning_rate: float
    in_transition: bool


def per_lod(values: Sequence, layer_count: int, name: str) -> list:
    """Expands a per-LOD list to ``layer_count`` entries; a shorter list repeats its last value."""
    values = list(values)
    if not values:
        raise ValueError(f"--{name} is empty: give one value or one per LOD (up to {layer_count})")
    if len(values) > layer_count:
        raise ValueError(
            f"--{name} has {len(values)} values but the model has only {layer_count} LODs "
            f"(layer_count={layer_count}); give at most {layer_count}"
        )
    return values + [values[-1]] * (layer_count - len(values))


class Schedule:
    """Maps images seen to the phase of progressive training.

    Args:
      layer_count: number of LODs (resolution 4 * 2 ** (layer_count - 1) at the top).
      images_per_lod: images trained at each LOD before moving up (transition included);
        0 or less disables growing (always the top LOD, alpha 1).
      batch_sizes, learning_rates: per-LOD lists (shorter lists repeat their last value).
      fade: "cosine" (ALAE release) or "linear" (StyleGAN).
      transition_images: length of the fade-in at the start of each LOD above ``start_lod``;
        half of ``images_per_lod`` when None (the release uses epochs_per_lod // 2 epochs).
      start_lod: the first LOD trained (0 = 4x4).
    """

    def __init__(
        self,
        layer_count: int,
        images_per_lod: float,
        batch_sizes: Sequence[int],
        learning_rates: Sequence[float],
        fade: str = "cosine",
        transition_images: float | None = None,
        start_lod: int = 0,
    ):
        if fade not in ("cosine", "linear"):
            raise ValueError(f"fade must be 'cosine' or 'linear', got {fade!r}")
        if not 0 <= start_lod < layer_count:
            raise ValueError(f"start_lod={start_lod} is outside [0, {layer_count - 1}]")
        self.layer_count = layer_count
        self.images_per_lod = float(images_per_lod)
        self.batch_sizes = [int(b) for b in per_lod(batch_sizes, layer_count, "batch_sizes")]
        self.learning_rates = [float(x) for x in per_lod(learning_rates, layer_count, "learning_rates")]
        if any(b <= 0 for b in self.batch_sizes):
            raise ValueError(f"--batch_sizes must be positive, got {self.batch_sizes}")
        self.fade = fade
        self.transition_images = (
            self.images_per_lod / 2 if transition_images is None else float(transition_images)
        )
        if self.images_per_lod > 0 and not 0 <= self.transition_images <= self.images_per_lod:
            raise ValueError(
                f"transition of {self.transition_images} images does not fit in a LOD of "
                f"{self.images_per_lod} images"
            )
        self.start_lod = start_lod

    @property
    def growing(self) -> bool:
        return self.images_per_lod > 0 and self.start_lod < self.layer_count - 1

    def phase(self, images_seen: float) -> Phase:
        """The phase at ``images_seen`` images since the start of training."""
        top = self.layer_count - 1
        if not self.growing:
            lod = top
            return Phase(lod, 1.0, self.batch_sizes[lod], self.learning_rates[lod], False)
        step = int(images_seen // self.images_per_lod)
        lod = min(top, self.start_lod + step)
        alpha, in_transition = 1.0, False
        if lod > self.start_lod and step == lod - self.start_lod:
            into = images_seen - step * self.images_per_lod
            if into < self.transition_images:
                in_transition = True
                t = into / self.transition_images
                alpha = (1.0 - math.cos(math.pi * t)) / 2.0 if self.fade == "cosine" else t
        return Phase(lod, alpha, self.batch_sizes[lod], self.learning_rates[lod], in_transition)

    def lod_start(self, lod: int) -> float:
        """Images seen when ``lod`` begins."""
        if not self.growing:
            return 0.0
        return max(0, lod - self.start_lod) * self.images_per_lod

    def next_boundary(self, images_seen: float) -> float:
        """Images seen at the next LOD change (inf when already at the top)."""
        phase = self.phase(images_seen)
        if not self.growing or phase.lod == self.layer_count - 1:
            return math.inf
        return self.lod_start(phase.lod + 1)
