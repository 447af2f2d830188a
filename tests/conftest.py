"""Test setup: two logical CPU devices so MirroredStrategy has real replicas without a GPU."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import pytest  # noqa: E402

_TWO = []


@pytest.fixture
def two_replicas():
    """One 2-replica MirroredStrategy per process: separate instances over the same devices can
    collide on collective instance keys ("Shape mismatch in the collective instance")."""
    if not _TWO:
        _TWO.append(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    return _TWO[0]
