"""The study's plots, drawn by a process of its own that got ready while the trials ran.

matplotlib, optuna.visualization and optuna.importance take about a second of CPU to import,
and a process's first drawing half a second more (fonts, renderers, Optuna's plot code).
Loaded on a thread of the tuner, the imports held the interpreter's lock meanwhile, which every
system call of the controller (starting a trial, appending to the journal) then waited for. The
worker (niced below the trials) imports and draws a made-up study beside the trials instead, and
draws the study's plots at its end. (Two workers, each drawing half, ended the study 0.3 s sooner
but slowed the trials' starts beside them on 2 cores more than that, at any priority.)

The worker waits for one request on stdin (a pickle of `results.write_plots`'s arguments) and
answers on stdout (a pickle: the files written and what it printed, or the exception raised).
It exits at its stdin's end, at once: a tuner that dies, even by kill -9, leaves no worker
(one that waited for its warm-up kept the dead tuner's stderr open for seconds). Wherever the
worker cannot answer (it died, could not start), the tuner draws the plots itself.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import io
import os
import pickle
import subprocess
import sys

NICE = 19  # below the trials: the plots wait, the trials do not


class PlotWorker:
    """A worker started ahead (`start`), asked once (`draw`)."""

    def __init__(self):
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        if self._process is not None:
            return
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tuner.plot_worker"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, start_new_session=True)  # Ctrl-C is the tuner's
        except OSError:
            self._process = None  # draw() draws in this process

    def draw(self, output_dir: str, rows, parameter_ids: list[str],
             objectives: tuple[tuple[str, bool], ...]) -> list[str]:
        """results.write_plots, in the worker if it runs, else here; prints what it printed."""
        request = pickle.dumps((output_dir, rows, parameter_ids, objectives))
        answer = self._ask(request)
        if answer is None:
            from tuner import results

            return results.write_plots(output_dir, rows, parameter_ids, objectives)
        written, printed, error = answer
        sys.stdout.write(printed)
        if error is not None:
            raise error
        return written

    def _ask(self, request: bytes):
        process, self._process = self._process, None
        if process is None:
            return None
        try:
            out, _ = process.communicate(request)
            return pickle.loads(out) if process.returncode == 0 else None
        except (OSError, pickle.UnpicklingError, EOFError):
            process.kill()
            process.wait()
            return None

    def close(self) -> None:
        """Ends a worker that was not asked (it has written nothing)."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()


def _serve() -> None:
    os.nice(NICE)
    reader = concurrent.futures.ThreadPoolExecutor(1).submit(_request)  # from the start: a
    # tuner that ends before it asks ends the worker at once, not after its warm-up
    from tuner import results

    _warm_up(results)
    request = reader.result()
    printed = io.StringIO()
    written, error = [], None
    with contextlib.redirect_stdout(printed):
        try:
            written = results.write_plots(*pickle.loads(request))
        except Exception as exc:  # the tuner's to report, as if it had drawn the plots
            error = exc
    sys.stdout.buffer.write(pickle.dumps((written, printed.getvalue(), error)))
    sys.stdout.buffer.flush()
    os._exit(0)  # the answer is out: the interpreter's clean-up (half a second) helps no one


def _request() -> bytes:
    """The request on stdin; the worker's end, if stdin ends without one."""
    request = sys.stdin.buffer.read()
    if not request:
        os._exit(0)  # the tuner ended without asking
    return request


def _warm_up(results) -> None:
    """Draws every plot of a made-up study, into memory: the study's end then waits for no
    first-time loading."""
    import matplotlib.pyplot as plt

    from tuner.trial import TrialState

    rows = [results.Row(str(i), TrialState.SUCCEEDED, float(i), 2, 1.0,
                        {"a": str(i / 4), "b": str(4 - i)}, curve=[(1, 0.0), (2, float(i))])
            for i in range(1, 4)]
    with contextlib.redirect_stdout(io.StringIO()):
        drawn = results.figures(results.plotted_study(rows, ["a", "b"], (("m", False),)),
                                (("m", False),))
    for axes in drawn.values():
        if not isinstance(axes, str):
            axes.figure.tight_layout()
            axes.figure.savefig(io.BytesIO(), format="png", dpi=results.PLOT_DPI)
            plt.close(axes.figure)


if __name__ == "__main__":
    _serve()
