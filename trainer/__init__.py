"""Train TensorFlow models on Vertex AI and on a laptop with the same code."""
import os

# tf-keras, not Keras 3: Keras 3 `fit` fails under multi-worker MWMS on TF 2.21
# (DESIGN.md section 4). This must be set before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# Keep TensorFlow's C++ start-up chatter out of the user's terminal unless asked for.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

__version__ = "0.1.0"
