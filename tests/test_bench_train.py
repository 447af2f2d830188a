"""alae_tf.bench --mode=step: the convolution FLOP count of a traced step, and the JSON it
prints with the batch in memory and with real data."""
import pytest
import tensorflow as tf

from alae_tf import bench
from alae_tf import train  # noqa: F401  both in one process: no flag may be defined twice
from tfrecords_tools.writer import convert


def _graph(fn, *specs):
    return tf.function(fn).get_concrete_function(*specs).graph


def test_conv_flops_forward_strided_and_transposed():
    x = tf.TensorSpec([2, 8, 8, 3])
    w = tf.TensorSpec([3, 3, 3, 5])
    assert bench.conv_flops(_graph(lambda x, w: tf.nn.conv2d(x, w, 1, "SAME"), x, w)) == \
        2 * (2 * 8 * 8) * 5 * (3 * 3 * 3)
    # stride 2: a quarter of the output positions
    assert bench.conv_flops(_graph(lambda x, w: tf.nn.conv2d(x, w, 2, "SAME"), x, w)) == \
        2 * (2 * 4 * 4) * 5 * (3 * 3 * 3)
    # transposed 4x4, stride 2, 4x4 -> 8x8: every kernel tap once per input position
    up = _graph(lambda x, w: tf.nn.conv2d_transpose(x, w, [1, 8, 8, 6], 2, "SAME"),
                tf.TensorSpec([1, 4, 4, 3]), tf.TensorSpec([4, 4, 6, 3]))
    assert bench.conv_flops(up) == 2 * (4 * 4) * 3 * (4 * 4 * 6)


def test_conv_flops_counts_what_runs_only():
    x0 = tf.random.normal([2, 8, 8, 3])
    w = tf.Variable(tf.random.normal([3, 3, 3, 5]))
    fwd = 2 * (2 * 8 * 8) * 5 * (3 * 3 * 3)

    def unused():
        tf.nn.conv2d(x0, w, 1, "SAME")  # result dropped: pruned at run time
        return tf.constant(1.0)
    assert bench.conv_flops(_graph(unused)) == 0

    x = tf.Variable(x0)  # watched like w, so the tape could give its gradient too; not asked

    def weight_grad():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.nn.conv2d(x, w, 1, "SAME") ** 2)
        w.assign_sub(0.1 * tape.gradient(loss, w))  # a stateful update keeps its inputs
        return loss
    assert bench.conv_flops(_graph(weight_grad)) == 2 * fwd  # forward + filter gradient

    @tf.function(jit_compile=True)
    def inner(x):
        return tf.nn.conv2d(x, w, 1, "SAME")
    assert bench.conv_flops(_graph(lambda: inner(x0) * 2.0)) == fwd  # nested call followed


def test_step_json_in_memory_and_real_data(monkeypatch, tmp_path):
    monkeypatch.setitem(bench.CONFIGS, "tiny", dict(
        resolution=8, channels=1, latent_size=8, layer_count=2, start_channels=8,
        max_channels=16, mapping_layers=2, batch=2))
    convert(source="mnist5k", output_dir=str(tmp_path), name="mn", max_images=20, parts=2, workers=1)
    result = bench.run_step("tiny", steps=2, warmup=1, rounds=2, data_dir=str(tmp_path),
                            count_flops=True)
    assert result["batch"] == 2 and result["policy"] == "float32"
    assert result["images_per_second"] == pytest.approx(2 / result["seconds_per_step"], rel=0.01)
    assert result["images_per_second_real_data"] == pytest.approx(
        2 / result["seconds_per_step_real_data"], rel=0.01)
    assert result["real_over_memory"] == pytest.approx(
        result["seconds_per_step_real_data"] / result["seconds_per_step"], rel=0.01)
    gflop = result["conv_gflop_per_iteration"]
    assert gflop > 0 and result["conv_gflops_machine"] > 0
    assert result["images_per_second_conv_bound"] == pytest.approx(
        2 * result["conv_gflops_machine"] / gflop, rel=0.02)
    # every convolution's work is proportional to the batch; no data_dir: no real-data figures
    again = bench.run_step("tiny", steps=1, warmup=0, rounds=1, batch=4, count_flops=True)
    assert again["conv_gflop_per_iteration"] == pytest.approx(2 * gflop, rel=1e-3)
    assert "real_over_memory" not in again
