"""Where trials run: the seam between the controller and the machines that run trials.

The controller (tuner/controller.py) starts, watches and stops trials through a backend, and
nothing else; the oracle (tuner/study.py) never sees one. A backend offers:

- `capacity`: how many trials it runs at once;
- `start(record, announce) -> run`: starts a run of the trial, after calling
  `announce(command, run_name)` so the study records the run before it begins (a later tuner
  ends what is left of it first); raises `StartFailed` when the trial cannot start (the trial
  FAILED), OSError ENOSPC/EDQUOT when there is no space (the study stops, the trial stays
  ACTIVE);
- `wait(timeout_s, wake_fd)`: blocks until a run may have news (an exit, a measurement), the
  file descriptor `wake_fd` is readable, or the timeout passes;
- `on_interrupt(runs) -> bool`: the tuner was interrupted; True leaves the runs running (cloud
  jobs the user keeps), False has the controller stop them;
- `close()`: the controller is done; ends what the backend keeps ready for a next start (a
  spare keeper process, for local trials).

A run offers `where` (words for the view), `measurements` (all so far, earlier runs' too),
`read()` (the new ones), `elapsed_s()`, `poll() -> Exit | None` (tuner/trial.py),
`stop(reason)` (gracefully; the run then ends STOPPED), `stopping`, and `kill_now()`.

Two implementations: local processes (tuner/backends/local.py) and Vertex AI custom jobs
(tuner/backends/vertex.py).
"""

import os


def drain(fd: int) -> None:
    """Reads a non-blocking descriptor empty: its wake-ups have been seen."""
    try:
        while os.read(fd, 65536):
            pass
    except BlockingIOError:
        pass


class StartFailed(Exception):
    """The trial's run could not start; the text says why (it becomes the trial's reason)."""
