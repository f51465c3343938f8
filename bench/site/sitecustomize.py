"""Registers the benchmarks' own TFDS builders in trainer processes, for bench/digits_x16.

The trainer accepts only dataset names that TFDS has builder code for, and the multi-worker
launcher starts each replica as `python -m trainer.task`, so the builder must be registered at
interpreter start-up: with bench/site on PYTHONPATH, Python imports this module first. It does
something only when BENCH_TFDS_BUILDERS names modules (in bench/) and the process runs
`-m trainer.task`; everything else starts as usual.
"""
import os
import sys

_names = os.environ.get("BENCH_TFDS_BUILDERS")
_argv = list(getattr(sys, "orig_argv", []))
if _names and "-m" in _argv and _argv[_argv.index("-m") + 1:][:1] == ["trainer.task"]:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for _name in _names.split(","):
        __import__(_name)
