"""`python -m tuner dashboard`: a study in the browser, as the tools users already know show it.

optuna-dashboard reads the study's own storage: the tuner records measurements as Optuna
intermediate values and each trial's state, reason and command as user attributes (see
tuner/study.py), so nothing is converted. Reading a journal takes no lock (only Optuna's
writers take it), so a running tuner is never held up. optuna-dashboard has no read-only mode
in its public API; every change it makes comes through a POST, PUT or DELETE route, so the
served app refuses any method but GET and HEAD unless --allow-writes is given. TensorBoard
shows every trial's `<output dir>/<trial id>/logs/`; it and its data server end with this
process, however it ends.
"""
from __future__ import annotations

import errno
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

from tuner import keeper

READ_METHODS = ("GET", "HEAD")


class DashboardError(Exception):
    """Bad input found before anything is served: one line, exit 2."""


def recorded_study(output_dir: str) -> tuple[str, str]:
    """The storage and study name a `run` recorded in its output dir's tuner.json."""
    if not os.path.isdir(output_dir):
        raise DashboardError(f"{output_dir}: no such folder; give a study's --output-dir "
                             "(or --storage URL)")
    try:
        with open(os.path.join(output_dir, "tuner.json")) as f:
            state = json.load(f)
        return state["storage"], state["study_name"]
    except OSError:
        raise DashboardError(f"{output_dir}: no tuner.json; is this a study's --output-dir?"
                             ) from None
    except (ValueError, KeyError, TypeError):
        raise DashboardError(f"{output_dir}/tuner.json is not a tuner's record (storage, "
                             "study_name); is this a study's --output-dir?") from None


def open_storage(url: str, study_name: str | None):
    """The Optuna storage at `url`, which must hold `study_name` (any study, if None), and the
    study's id (None if no name was given)."""
    import optuna

    from tuner.journal import DamagedJournal
    from tuner.study import StorageUnusable, existing_storage, shown

    try:
        storage = existing_storage(url)
        names = optuna.get_all_study_names(storage)
    except FileNotFoundError:
        raise DashboardError(f"the study storage {shown(url)} does not exist; give the "
                             "journal file (or database URL) a tuner ran with") from None
    except (DamagedJournal, StorageUnusable) as exc:
        raise DashboardError(str(exc)) from None
    if study_name is None:
        if not names:
            raise DashboardError(f"{shown(url)} holds no study; give the storage a tuner ran "
                                 "with")
        return storage, None
    if study_name not in names:
        raise DashboardError(f"{shown(url)} holds no study {study_name!r} (it holds "
                             f"{', '.join(map(repr, names)) or 'none'})")
    return storage, storage.get_study_id_from_name(study_name)


def read_only(app):
    """The WSGI app, refusing every request that could change the study (405)."""
    def guarded(environ, start_response):
        if environ["REQUEST_METHOD"] in READ_METHODS:
            return app(environ, start_response)
        body = json.dumps({"reason": "this dashboard is read-only: restart `python -m tuner "
                                     "dashboard` with --allow-writes to change the study"
                           }).encode()
        start_response("405 Method Not Allowed", [
            ("Content-Type", "application/json"), ("Allow", ", ".join(READ_METHODS)),
            ("Content-Length", str(len(body)))])
        return [body]
    return guarded


class _QuietHandler(WSGIRequestHandler):
    """The browser polls the study every few seconds: one log line a request is noise."""

    def log_message(self, format, *args):
        pass


def bind(app, host: str, port: int):
    try:
        return make_server(host, port, app, handler_class=_QuietHandler)
    except socket.gaierror:
        raise DashboardError(f"--host {host}: no such address on this machine") from None
    except OverflowError:
        raise DashboardError(f"--port {port}: a port is 0-65535 (0 picks a free one)") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise DashboardError(f"port {port} on {host} is in use: give --port another one "
                                 "(0 picks a free one)") from None
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EACCES):
            raise DashboardError(f"cannot listen on {host}:{port} ({exc.strerror}): give "
                                 "another --host or --port") from None
        raise


def _url(host: str, port: int, path: str = "/") -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{path}"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_tensorboard(output_dir: str | None, host: str, wanted: bool
                      ) -> tuple[subprocess.Popen, str] | None:
    """TensorBoard over the trials' log dirs and its keeper's log dir, or None (and one line
    saying why). It runs under
    a keeper (tuner/keeper.py), as a trial does: its data server is a process of its own, and
    the keeper ends both when this process stops, even by kill -9. Its output goes to
    <temp dir>/stdout and stderr: the study's folder is only read."""
    if not wanted:
        return None
    if output_dir is None:
        print("tensorboard: not started (no study output dir given: the trials' logs are "
              "in <output dir>/<trial id>/logs/)", flush=True)
        return None
    if importlib.util.find_spec("tensorboard") is None:
        print("tensorboard: not installed; `pip install tensorboard` to see each trial's "
              "curves side by side", flush=True)
        return None
    port = _free_port(host)
    logs = tempfile.mkdtemp(prefix="tuner-tensorboard-")
    child = keeper.spawn()
    child.stdin.write(keeper.order(logs, 0, [sys.executable, "-m", "tensorboard.main",
                                             "--logdir", os.path.abspath(output_dir),
                                             "--host", host, "--port", str(port)],
                                   dict(os.environ)))
    child.stdin.flush()
    print(f"tensorboard: {_url(host, port)} (each trial's {output_dir}/<trial id>/logs/; "
          f"its messages: {logs}/stderr)", flush=True)
    return child, logs


def stop(child: subprocess.Popen, logs: str) -> None:
    """Ends TensorBoard and its data server at once (they only read the logs, so a kill leaves
    nothing half-written): the keeper kills its tree when its stdin closes."""
    child.stdin.close()
    child.wait()
    shutil.rmtree(logs, ignore_errors=True)


def serve(output_dir: str | None, storage_url: str | None, host: str, port: int, *,
          allow_writes: bool, tensorboard: bool) -> int:
    """Serves until SIGINT or SIGTERM; returns 128 + that signal, as the other commands do."""
    if storage_url is None:
        storage_url, study_name = recorded_study(output_dir)
    else:
        study_name = None
    storage, study_id = open_storage(storage_url, study_name)
    import optuna_dashboard

    from tuner.study import shown

    app = optuna_dashboard.wsgi(storage)
    server = bind(app if allow_writes else read_only(app), host, port)
    asked = []

    def stop_serving(signum, _frame):  # shutdown() waits for serve_forever: from a thread
        if not asked:
            asked.append(signum)
            threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {s: signal.signal(s, stop_serving) for s in (signal.SIGINT, signal.SIGTERM)}
    tensorboard_run = None
    try:
        page = "/dashboard" if study_id is None else f"/dashboard/studies/{study_id}"
        print(f"dashboard: {_url(host, server.server_address[1], page)} "
              f"({shown(storage_url)}; "
              f"{'writes allowed' if allow_writes else 'read-only; --allow-writes to change it'}"
              ") - Ctrl-C stops", flush=True)
        tensorboard_run = start_tensorboard(output_dir, host, tensorboard)
        server.serve_forever()
    finally:
        server.server_close()
        if tensorboard_run is not None:
            stop(*tensorboard_run)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 128 + asked[0]
