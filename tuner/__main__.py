import os
import select
import signal
import sys
import threading

from tuner.cli import main

try:
    code = main()
    sys.stdout.flush()
except BrokenPipeError:
    # Whoever read our output stopped reading (`tuner validate X | head -1`): end as a program
    # that SIGPIPE ends, without a traceback; later writes go nowhere. A broken pipe of our own
    # (stdout still read) is a bug, and keeps its traceback.
    poll = select.poll()
    poll.register(sys.stdout.fileno(), 0)
    if not any(events & select.POLLERR for _, events in poll.poll(0)):
        raise
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    code = 128 + signal.SIGPIPE
sys.stderr.flush()
if threading.active_count() == 1:
    # Everything is written and closed: skip the interpreter's teardown of numpy, scipy and
    # Optuna, 0.3-0.6 s here after the study's last line (a thread still at work, e.g. a
    # suggestion being recorded, gets the normal exit, which waits for it).
    os._exit(code or 0)
sys.exit(code)
