"""The live view of `python -m tuner run` in a real 80x24 pseudo-terminal, and without one.

The tuner runs a real short study with its output on the pty; what it writes is replayed
through pyte, a VT100 terminal emulator, to see what the user's screen shows: rows wider than
the terminal wrap there, and the table's redraw then leaves old copies of it behind.
"""
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import pyte
import pytest

from tests.tuner.support import ROOT, TIMEOUT_S, config, run_tuner, tuner_env

COLUMNS, LINES = 80, 24
FOOTER = re.compile(r"^-- \d+ running, \d+ finished of \d+ --")
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# Five parameters: a running trial's row is about 120 characters before it is fitted.
PARAMETERS = [
    {"parameterId": "x", "doubleValueSpec": {"minValue": 0.0, "maxValue": 1.0}},
    {"parameterId": "y", "doubleValueSpec": {"minValue": 0.0, "maxValue": 1.0}},
    {"parameterId": "units", "doubleValueSpec": {"minValue": 100.0, "maxValue": 900.0}},
    {"parameterId": "optimizer", "categoricalValueSpec": {"values": ["rmsprop", "adagrad"]}},
    {"parameterId": "momentum", "doubleValueSpec": {"minValue": 0.1, "maxValue": 0.9}},
]


def _study(write_config, parallel=2):
    return write_config(config(maxTrialCount=4, parallelTrialCount=parallel,
                               study={"parameters": PARAMETERS, "algorithm": "RANDOM_SEARCH"},
                               args=["--steps=4", "--sleep=0.6"]))


def _run_on_a_terminal(lines, *args):
    """Runs the tuner with stdout and stderr on a new pty of `lines` x 80; returns its exit
    code and everything it wrote there."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, COLUMNS, 0, 0))
    env = {k: v for k, v in tuner_env(TERM="xterm").items() if k not in ("COLUMNS", "LINES")}
    process = subprocess.Popen([sys.executable, "-m", "tuner", *map(str, args)], cwd=ROOT,
                               stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer of the pty has closed it
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return code, b"".join(chunks).decode()


@pytest.mark.parametrize("lines,parallel", [(LINES, 2), (5, 4)], ids=["80x24", "80x5"])
def test_the_table_fits_the_terminal_and_leaves_no_copies(write_config, tmp_path, lines,
                                                          parallel):
    """80x5: four running trials and the heading would not fit; the table shows fewer."""
    code, output = _run_on_a_terminal(lines, "run", _study(write_config, parallel),
                                      "--output-dir", tmp_path / "study", "--seed=3")
    assert code == 0, output
    assert re.search(r"-- \d+ running", output), "the table was never drawn"
    # every line of the live view (after the study's heading, before the blank line that
    # opens the summary, whose table and commands are left whole) fits, escapes aside
    written = ESCAPE.sub("", output).split("\r\n")  # the pty's line end
    start = next(i for i, line in enumerate(written) if line.startswith("output: ")) + 1
    live = written[start:written.index("", start)]
    assert len(live) > 8, written
    for line in live:
        assert len(line) <= COLUMNS, line

    screen = pyte.HistoryScreen(COLUMNS, lines, history=100_000)
    pyte.Stream(screen).feed(output)
    seen = [("".join(line[x].data for x in range(COLUMNS))).rstrip()
            for line in screen.history.top] + [line.rstrip() for line in screen.display]
    # the table was taken off the screen before the summary: no copy of it is left anywhere
    assert [line for line in seen if FOOTER.match(line)] == [], "\n".join(seen)
    assert any(line.startswith("best trial ") for line in seen), "\n".join(seen)


def test_without_a_terminal_the_output_is_plain_lines(write_config, tmp_path):
    result = run_tuner("run", _study(write_config), "--output-dir", tmp_path / "study",
                       "--seed=3")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert not any(FOOTER.match(line) for line in result.stdout.splitlines())
    assert "trial 1 step 4: score=" in result.stdout
