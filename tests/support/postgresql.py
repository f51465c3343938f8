"""A real PostgreSQL server for tests: Debian's initdb and pg_ctl, in a temp dir, on loopback.

    with PostgresServer() as server:
        url = server.create_database()   # postgresql://tuner@127.0.0.1:PORT/<new database>

PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user (Debian's
package creates it), made with `useradd` where it is missing. The port is one the kernel
chose free a moment before; `trust` authentication on loopback only, so the URL has no password.
"""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid

START_TIMEOUT_S = 60
USER = "tuner"


def find_bin(name):
    """The newest installed PostgreSQL's program `name`, or None."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                   key=lambda p: int(p.split("/")[4]))
    return found[-1] if found else shutil.which(name)


def free_port():
    """A loopback port free a moment ago (nothing listens there once it is closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_user():
    """None to run as ourselves; as root, the non-root account the server runs as."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return "postgres"


class PostgresServer:
    def __init__(self):
        self._dir = None
        self.port = None
        self._user = _server_user()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def _run(self, *argv, timeout=START_TIMEOUT_S):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                user=self._user, cwd=self._dir)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr or result.stdout}")
        return result

    def start(self):
        self._dir = tempfile.mkdtemp(prefix="postgresql-")
        if self._user:
            os.chown(self._dir, pwd.getpwnam(self._user).pw_uid, -1)
        data = os.path.join(self._dir, "data")
        self._run(find_bin("initdb"), "-D", data, "-U", USER, "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        self.port = free_port()
        options = (f"-p {self.port} -k {self._dir} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off")
        try:
            self._run(find_bin("pg_ctl"), "-D", data, "-o", options, "-l",
                      os.path.join(self._dir, "server.log"), "-w", "-t", str(START_TIMEOUT_S),
                      "start")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        if self._dir is None:
            return
        data = os.path.join(self._dir, "data")
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            subprocess.run([find_bin("pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=START_TIMEOUT_S, user=self._user)
        shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None

    def url(self, database="postgres"):
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self):
        """A new, empty database; its URL as a user types it."""
        name = f"study_{uuid.uuid4().hex[:12]}"
        self._run(find_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER,
                  name)
        return self.url(name)
