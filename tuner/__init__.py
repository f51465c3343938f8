"""A Vertex AI hyperparameter tuning job, run on this machine: `python -m tuner`.

Pure Python: it never imports TensorFlow or trainer/, it runs trial commands as Vertex does.
"""
