"""The UCI optical-recognition handwritten digits as a TFDS dataset, read from a package file.

1,797 8x8 grey-level images (values 0..16), ten classes; the copy scikit-learn ships.
Source: E. Alpaydin, C. Kaynak, UCI Machine Learning Repository, CC BY 4.0.
Registering it as a TFDS builder keeps one code path for it and for `mnist`, `cifar10`, ...
"""
from importlib import resources

import numpy as np
import tensorflow_datasets as tfds


class UciDigits(tfds.core.GeneratorBasedBuilder):
    """The built-in offline dataset: everything in one `train` split; the trainer holds out validation."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: 1,797 images from the package's uci_digits.npz."}

    def _info(self):
        return self.dataset_info_from_configs(
            description="UCI ML optical recognition of handwritten digits, 8x8, values 0..16.",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(8, 8, 1), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=10),
            }),
            supervised_keys=("image", "label"),
            homepage="https://archive.ics.uci.edu/dataset/80",
            license="CC BY 4.0",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        with resources.files(__package__).joinpath("uci_digits.npz").open("rb") as f:
            data = np.load(f)
            images, labels = data["images"], data["labels"]
        for i, (image, label) in enumerate(zip(images, labels)):
            yield i, {"image": image[..., np.newaxis], "label": int(label)}
