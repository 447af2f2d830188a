"""python -m tfrecords_tools.convert: images -> multi-LOD TFRecords (StyleGAN / ALAE format).

Examples:
  python -m tfrecords_tools.convert --source mnist5k --output_dir data/mnist5k \
      --name mnist5k --test_count 500
  python -m tfrecords_tools.convert --source images --input photos/ --resolution 256 \
      --output_dir data/photos --name photos --parts 8
  python -m tfrecords_tools.convert --source celeba --input img_align_celeba.zip \
      --output_dir data/celeba --name celeba

Writes OUTPUT_DIR/NAME-rXX.tfrecords.NNN for r = 02 .. log2(resolution) and
OUTPUT_DIR/NAME.manifest.json (and NAME_test-* with a test split). See docs/data.md.
Errors are one line on stderr ("error: ...") with exit status 1.
"""
from __future__ import annotations

import os
import signal
import sys

from absl import app, flags, logging

from tfrecords_tools import cli
from tfrecords_tools import format as fmt
from tfrecords_tools.sources import SOURCES, SourceError
from tfrecords_tools.writer import ConvertError, convert

FLAGS = flags.FLAGS


def summary_line(m: dict, output_dir: str) -> str:
    lo, hi = m["levels"][0], m["levels"][-1]
    return (f"wrote {m['name']}: {m['count']} images, levels r{lo:02d}..r{hi:02d} "
            f"({2 ** lo}x{2 ** lo}..{2 ** hi}x{2 ** hi}), {m['parts']} part(s) per level, "
            f"{m['channels']} channel(s), labels {'yes' if m['labels'] else 'no'}, "
            f"{m['skipped']['count']} skipped -> {os.path.join(output_dir, m['name'])}-rXX")


def conversion_line(manifests: list[dict]) -> str:
    """The whole conversion's figures (the sets are written together)."""
    s = manifests[-1]["conversion"]
    return (f"conversion: {sum(m['count'] for m in manifests)} images in {s['seconds']} s, "
            f"{s['images_per_second']} img/s, {s['workers']} worker(s), peak RSS main "
            f"{s['peak_rss_mib']['main']} MiB, worker {s['peak_rss_mib']['largest_worker']} MiB")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        if FLAGS.source is None:
            raise ConvertError("--source is required")
        if FLAGS.output_dir is None:
            raise ConvertError("--output_dir is required")
        parts = FLAGS.parts
        if FLAGS.stylegan_layout:
            if FLAGS["parts"].present and parts != 1:
                raise ConvertError("--stylegan_layout writes one file per level; drop --parts")
            parts = 1
        manifests = convert(
            source=FLAGS.source, input=FLAGS.input, output_dir=FLAGS.output_dir,
            name=FLAGS.name, labels=FLAGS.labels, resolution=FLAGS.resolution,
            channels=FLAGS.channels, parts=parts, stylegan_layout=FLAGS.stylegan_layout,
            test_count=FLAGS.test_count, test_fraction=FLAGS.test_fraction,
            shuffle_seed=FLAGS.shuffle_seed if FLAGS.shuffle_seed >= 0 else None,
            max_images=FLAGS.max_images, skip_bad=FLAGS.skip_bad, workers=FLAGS.workers,
            allow_upscale=FLAGS.allow_upscale, overwrite=FLAGS.overwrite)
    except (ConvertError, SourceError, fmt.DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        sys.exit(130)
    for m in manifests:
        print(summary_line(m, FLAGS.output_dir))
        for msg in m["skipped"]["images"][:20]:
            print(f"  skipped {msg}")
    print(conversion_line(manifests))


def _terminated(signum, frame):
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does


def _define_flags():
    """The command's flags, defined when it runs (importing the module defines none)."""
    flags.DEFINE_enum("source", None, list(SOURCES), "Kind of input.")
    flags.DEFINE_string("input", None, "File or folder of the source (not needed for mnist5k).")
    flags.DEFINE_string("output_dir", None, "Folder to write the dataset into.")
    flags.DEFINE_string("name", None, "Dataset name (file prefix); default: the source kind.")
    flags.DEFINE_integer("resolution", None, "Top resolution, a power of two >= 4; default: "
                         "the source's (mnist 32, celeba 128, ffhq / npz: the images' size).")
    flags.DEFINE_integer("channels", None, "1 or 3; default: 1 for MNIST, else 3 (npz: its own).")
    flags.DEFINE_integer("parts", 4, "Files (shards) per level; readers shard workers by part.")
    flags.DEFINE_integer("test_count", None, "Hold out this many images as NAME_test.")
    flags.DEFINE_float("test_fraction", None, "Hold out this fraction of the images as NAME_test.")
    flags.DEFINE_integer("shuffle_seed", 0, "Seed of the shuffle before splitting / writing; "
                         "a negative value keeps the source's order.")
    flags.DEFINE_boolean("labels", None, "Write 'label' (--nolabels: never). Default: when the "
                         "source has labels (mnist, mnist5k, npz with labels); for images, "
                         "--labels takes the first-level sub-folder as the class.")
    flags.DEFINE_integer("max_images", None, "Convert at most this many images (after shuffling).")
    flags.DEFINE_boolean("stylegan_layout", False, "One file per level, NAME-rXX.tfrecords, "
                         "as StyleGAN's dataset_tool writes (no part suffix).")
    flags.DEFINE_boolean("skip_bad", False, "Skip corrupt / unreadable images (counted in the "
                         "summary and the manifest) instead of stopping.")
    flags.DEFINE_boolean("allow_upscale", False, "Upscale images smaller than --resolution "
                         "instead of stopping with an error.")
    flags.DEFINE_boolean("overwrite", False, "Replace an existing dataset of the same name.")
    flags.DEFINE_integer("workers", None, "Decoding processes; default: the number of CPUs.")


def run():
    _define_flags()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.set_verbosity(logging.INFO)
    signal.signal(signal.SIGTERM, _terminated)
    cli.run(main, __name__)


if __name__ == "__main__":
    run()
