"""TFDS builders for the datasets that ship inside the package (no network needed)."""
