"""`python bench/digits_x16 prepare DATA_DIR` (see __init__.py)."""
import os
import sys

# The builder must be imported as the package it is (TFDS reads its module's package), not run
# as __main__: put bench/ on the path and import it from there.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import digits_x16  # noqa: E402  (registers the builder)

sys.exit(digits_x16.main(sys.argv[1:]))
