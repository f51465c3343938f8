"""The plot worker: a real process that draws what results.write_plots draws, or leaves it to
the tuner."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.tuner.support import alive, assert_png, local_study, wait_for
from tuner import plot_worker, results
from tuner.results import PLOTS

TWO = ["x", "batch_size"]


def _rows(tmp_path):
    job, study = local_study(tmp_path, [(0.3, 0.2), (0.5,), None, (0.1, 0.4, 0.6)])
    return job, results.rows_from_records(job, study.records())


def _nice(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])


def _started(worker) -> int:
    worker.start()
    pid = worker._process.pid
    wait_for(lambda: _nice(pid) == plot_worker.NICE, 60, "the worker lowers its priority")
    return pid


@pytest.mark.parametrize("parameters", [TWO, ["x"]], ids=["all-plots", "one-not-drawn"])
def test_the_worker_draws_and_says_what_write_plots_does(tmp_path, capsys, parameters):
    job, rows = _rows(tmp_path)
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir(), there.mkdir()
    expected = results.write_plots(str(here), rows, parameters, ((job.metric, True),))
    said_here = capsys.readouterr().out
    worker = plot_worker.PlotWorker()
    pid = _started(worker)
    assert worker.draw(str(there), rows, parameters, ((job.metric, True),)) == expected
    assert capsys.readouterr().out == said_here
    assert sorted(os.listdir(there)) == sorted(expected)
    for name in expected:
        assert_png(there / name)
    assert not alive(pid)


def test_a_worker_that_died_leaves_the_drawing_to_the_tuner(tmp_path):
    job, rows = _rows(tmp_path)
    worker = plot_worker.PlotWorker()
    worker.start()
    worker._process.kill()
    worker._process.wait()
    assert worker.draw(str(tmp_path), rows, TWO, ((job.metric, True),)) == list(PLOTS)
    for name in PLOTS:
        assert_png(tmp_path / name)


def test_an_error_in_the_worker_is_raised_as_if_drawn_here(tmp_path):
    job, rows = _rows(tmp_path)
    worker = plot_worker.PlotWorker()
    pid = _started(worker)
    with pytest.raises(FileNotFoundError):
        worker.draw(str(tmp_path / "no-such-folder"), rows, TWO, ((job.metric, True),))
    assert not alive(pid)


def test_the_worker_ends_with_a_tuner_killed_by_sigkill():
    """Its stdin's end is the tuner's death: nothing is left waiting."""
    script = textwrap.dedent("""
        import time
        from tuner import plot_worker
        worker = plot_worker.PlotWorker()
        worker.start()
        print(worker._process.pid, flush=True)
        time.sleep(600)
    """)
    tuner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pid = int(tuner.stdout.readline())
    wait_for(lambda: _nice(pid) == plot_worker.NICE, 60, "the worker started")
    tuner.send_signal(signal.SIGKILL)
    tuner.wait()
    wait_for(lambda: not alive(pid), 60, "the worker ends with the tuner")
