"""Small file operations that work the same on local paths and on gs:// URIs.

metrics.json and config.json go through google-cloud-storage for gs:// paths, so a
user without TensorFlow's GCS filesystem still gets them. The client is imported on first
use; ``storage.Client()`` takes default credentials, or the emulator that
STORAGE_EMULATOR_HOST names. Failures on gs:// are raised as OSError, as they are locally.
"""
import contextlib
import errno
import mimetypes
import os
import tempfile
import uuid


def is_gcs(path: str) -> bool:
    return path.startswith("gs://")


def join(base: str, *parts: str) -> str:
    if is_gcs(base):
        return "/".join([base.rstrip("/"), *parts])
    return os.path.join(base, *parts)


def _split_gcs(path: str):
    bucket, _, name = path[len("gs://"):].partition("/")
    if not bucket or not name or name.endswith("/"):
        raise ValueError(f"not a gs:// object path: {path!r}")
    return bucket, name


def gcs_blob(path: str):
    from google.cloud import storage  # only gs:// paths need it

    bucket, name = _split_gcs(path)
    return storage.Client().bucket(bucket).blob(name)


@contextlib.contextmanager
def gcs_errors(path: str, doing: str):
    """Turns the client's errors into OSError subclasses that name the path."""
    from google.api_core import exceptions
    from google.auth.exceptions import DefaultCredentialsError

    try:
        yield
    except exceptions.NotFound as exc:
        # a write creates the object, so only the bucket can be missing
        what = f"bucket gs://{_split_gcs(path)[0]} does not exist" if doing == "write" else "not found"
        raise FileNotFoundError(f"cannot {doing} {path}: {what} ({exc.message})") from exc
    except (exceptions.Forbidden, exceptions.Unauthorized) as exc:
        raise PermissionError(f"cannot {doing} {path}: permission denied ({exc.message})") from exc
    except exceptions.GoogleAPICallError as exc:
        raise OSError(f"cannot {doing} {path}: {exc}") from exc
    except DefaultCredentialsError as exc:
        raise PermissionError(f"cannot {doing} {path}: no Google Cloud credentials ({exc})") from exc


def _retry():
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY


def write_text(path: str, text: str) -> None:
    """Writes atomically (temp file + rename) so a reader never sees half a file.

    On gs:// an upload is atomic by itself: the object appears whole or not at all.
    """
    if is_gcs(path):
        content_type = mimetypes.guess_type(path)[0] or "text/plain"
        with gcs_errors(path, "write"):
            # Uploading the same text again is harmless, so transient errors are retried.
            gcs_blob(path).upload_from_string(text, content_type=content_type, retry=_retry())
        return
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_text(path: str):
    """Returns the file's text, or None when it does not exist."""
    if is_gcs(path):
        from google.api_core.exceptions import NotFound

        with gcs_errors(path, "read"):
            try:
                return gcs_blob(path).download_as_text()
            except NotFound:  # no such object, or no such bucket
                return None
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


# The longest names a run writes below an output dir: TensorBoard event files carry the host
# name (up to 64 bytes) and come to about 110 bytes; checkpoint temp files to about 90.
ROOM_FOR_NAMES_INSIDE = 256


def check_writable(directory: str) -> None:
    """Probes that the directory can be written, creating nothing; raises OSError when it cannot.

    Validation must leave nothing behind, so a missing directory is probed at its nearest
    existing ancestor, and its names are checked against the file system's length limits
    (otherwise makedirs creates the parents and fails with ENAMETOOLONG half-way down).
    os.access is no test as root: it says yes where nothing can be written. On gs:// the
    probe object is written and deleted (training overwrites checkpoints, which needs both);
    that also shows the bucket exists, without the bucket read permission a writer may lack.
    """
    if is_gcs(directory):
        probe = join(directory, f".write-probe-{uuid.uuid4().hex}")
        with gcs_errors(probe, "write"):
            blob = gcs_blob(probe)
            blob.upload_from_string(b"")
        with gcs_errors(probe, "delete"):
            blob.delete()
        return
    existing, missing = _nearest_existing(os.path.abspath(directory))
    if not os.path.isdir(existing):
        raise NotADirectoryError(errno.ENOTDIR, f"{existing} is not a directory")
    _check_lengths(directory, existing, missing)
    fd, probe = tempfile.mkstemp(dir=existing, prefix=".write-probe-")
    os.close(fd)
    os.unlink(probe)


def _nearest_existing(path: str):
    """The deepest existing ancestor of path (or path itself) and the names missing below it."""
    missing = []
    while not os.path.lexists(path):
        path, name = os.path.split(path)
        missing.insert(0, name)
    return path, missing


def _check_lengths(directory: str, existing: str, missing: list[str]) -> None:
    name_max = os.pathconf(existing, "PC_NAME_MAX")
    for name in missing:
        if len(os.fsencode(name)) > name_max:
            raise OSError(errno.ENAMETOOLONG, f"the name {name[:40]}... is longer than this file system's "
                                              f"{name_max} bytes")
    path_max = os.pathconf(existing, "PC_PATH_MAX")
    if len(os.fsencode(os.path.abspath(directory))) + ROOM_FOR_NAMES_INSIDE > path_max:
        raise OSError(errno.ENAMETOOLONG, f"the path is longer than {path_max - ROOM_FOR_NAMES_INSIDE} bytes, "
                                          f"which leaves no room below it within the {path_max}-byte limit")
