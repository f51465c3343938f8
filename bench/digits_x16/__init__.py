"""A larger dataset for the throughput benchmarks: the built-in digits repeated 16 times.

    python bench/digits_x16 prepare DATA_DIR      # prepares digits_x16 in DATA_DIR
    PYTHONPATH=bench/site BENCH_TFDS_BUILDERS=digits_x16 python -m trainer.task \\
        --dataset=digits_x16 --data_dir=DATA_DIR ...

The 1,797 images of `uci_digits`, each repeated 16 times with a different one-pixel shift (so
consecutive batches differ), as a TFDS dataset: 28,752 examples, 23,002 for training with the
default validation split. On it the per-epoch costs that do not grow with the data (the
validation pass's set-up, checkpoints, logs) are spread over 16 times as many training steps.

The trainer accepts only dataset names that TFDS has a builder for, so trainer processes get
this builder registered at start-up by bench/site/sitecustomize.py (which works for the replicas
that `trainer.launch` starts too). The plain script reads the prepared files by name and needs
no builder. (A package, because TFDS looks for a builder's files in its module's package.)
"""
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

NAME = "digits_x16"
REPEATS = 16
SHIFTS = [(0, 0), (0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1)]


class DigitsX16(tfds.core.GeneratorBasedBuilder):
    """uci_digits x 16 with one-pixel shifts."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return self.dataset_info_from_configs(
            description=__doc__.splitlines()[0],
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(8, 8, 1), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=10)}),
            supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        from importlib import resources

        with resources.files("trainer.datasets").joinpath("uci_digits.npz").open("rb") as f:
            data = np.load(f)
            images, labels = data["images"], data["labels"]
        key = 0
        for r in range(REPEATS):
            dy, dx = SHIFTS[r % len(SHIFTS)]
            for image, label in zip(images, labels):
                shifted = np.roll(image, (dy, dx), axis=(0, 1)).astype(np.uint8)
                yield key, {"image": shifted[..., np.newaxis], "label": int(label)}
                key += 1


assert DigitsX16.name == NAME, DigitsX16.name


def main(argv):
    if argv[:1] == ["prepare"] and len(argv) == 2:
        DigitsX16(data_dir=argv[1]).download_and_prepare()
        print(NAME)
        return 0
    print(__doc__, file=sys.stderr)
    return 2
