"""The progressive-growing schedule against hand-computed phases."""
import math

import pytest

from alae_tf.schedule import Schedule, per_lod


def test_cosine_fade_and_lod_switches():
    s = Schedule(layer_count=3, images_per_lod=1000, batch_sizes=[64, 32, 16],
                 learning_rates=[0.1, 0.2, 0.3])
    p = s.phase(0)
    assert (p.lod, p.alpha, p.batch_size, p.learning_rate, p.in_transition) == (0, 1.0, 64, 0.1, False)
    assert s.phase(999).lod == 0
    p = s.phase(1000)
    assert (p.lod, p.alpha, p.batch_size, p.in_transition) == (1, 0.0, 32, True)
    for seen, t in [(1125, 0.25), (1250, 0.5), (1400, 0.8)]:
        assert s.phase(seen).alpha == pytest.approx((1 - math.cos(math.pi * t)) / 2)
    p = s.phase(1500)
    assert (p.lod, p.alpha, p.in_transition) == (1, 1.0, False)
    p = s.phase(2250)
    assert (p.lod, p.learning_rate) == (2, 0.3) and p.alpha == pytest.approx(0.5)
    # The top LOD never ends and has no second transition.
    assert s.phase(10**7).lod == 2 and s.phase(10**7).alpha == 1.0
    assert s.next_boundary(0) == 1000 and s.next_boundary(1700) == 2000 and s.next_boundary(2500) == math.inf


def test_linear_fade_explicit_transition_and_start_lod():
    s = Schedule(layer_count=4, images_per_lod=600, batch_sizes=[8], learning_rates=[1e-3],
                 fade="linear", transition_images=200, start_lod=1)
    assert s.phase(0).lod == 1 and s.phase(0).alpha == 1.0  # the first LOD trained has no fade
    assert s.phase(600).lod == 2 and s.phase(700).alpha == pytest.approx(0.5)
    assert s.phase(800).alpha == 1.0 and not s.phase(800).in_transition
    assert s.phase(1200 + 50).alpha == pytest.approx(0.25) and s.phase(1250).lod == 3


def test_epochs_schedule_matches_release_integer_halving():
    # epochs_per_lod = 5 -> transition = 5 // 2 = 2 epochs of 100 images.
    s = Schedule(3, images_per_lod=500, batch_sizes=[10], learning_rates=[1.0], transition_images=200)
    assert s.phase(500 + 100).alpha == pytest.approx(0.5)
    assert s.phase(700).alpha == 1.0


def test_no_growing():
    s = Schedule(5, images_per_lod=0, batch_sizes=[4], learning_rates=[0.5])
    p = s.phase(123)
    assert (p.lod, p.alpha, p.batch_size) == (4, 1.0, 4)


def test_per_lod_lists():
    assert per_lod([1, 2], 4, "batch_sizes") == [1, 2, 2, 2]
    with pytest.raises(ValueError, match=r"--batch_sizes has 5 values but the model has only 4 LODs"):
        per_lod([1, 2, 3, 4, 5], 4, "batch_sizes")
    with pytest.raises(ValueError, match="--learning_rates is empty"):
        per_lod([], 4, "learning_rates")
    with pytest.raises(ValueError, match="fade must be"):
        Schedule(2, 10, [1], [1], fade="cubic")
