"""The kinds of failure the trainer reports, mapped to exit codes by task.py."""


class ConfigError(ValueError):
    """Bad usage or configuration (a flag, TF_CONFIG, an output dir): exit 2, before any work."""


class RunError(RuntimeError):
    """A failure during the run with a reason the user can act on: exit 1."""


class Stopped(RunError):
    """The run was stopped from outside (SIGTERM): exit 1 with the one line, no traceback, since
    nothing went wrong in the code."""
