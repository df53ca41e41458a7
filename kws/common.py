"""Small helpers every script shares: one-line CLI errors and atomic file writes.

A script wraps its main() with `run_cli(main)`; anything raised as `UserError` (the audio
module's `AudioError` is one) or an OSError such as a missing path is printed as one line and the
process exits with code 2. Standard library only: the Pi script uses it too.
"""

import argparse
import contextlib
import glob
import json
import os
import shutil
import signal
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository root


class UserError(Exception):
    """Bad input from the user: a missing path, an empty folder, a bad flag value."""


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    A reader never sees a half-written file under its final name, even if the process is killed.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    suffix = suffix if suffix is not None else os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".part" + suffix,
                               dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a new temporary folder beside `path`; if the block succeeds it takes the place of
    `path` (a folder, or nothing) whole, else it is removed: a reader sees the old folder or the
    new one, never a mix."""
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}.", suffix=".part", dir=parent)
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private
        if os.path.isdir(path):
            old = tempfile.mkdtemp(prefix=f".{name}.", suffix=".old", dir=parent)
            os.replace(path, os.path.join(old, name))
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def current_umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


def remove_partial_files(directory):
    """Delete temp files that a killed process left behind in directory (see atomic_path)."""
    for path in glob.glob(os.path.join(glob.escape(directory), ".*.part*")):
        os.remove(path)


def atomic_write_text(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def write_metrics(path, metrics):
    """A script's figures as JSON (`--metrics_json`): what other scripts read, never stdout."""
    if path:
        atomic_write_text(path, json.dumps(metrics, indent=1) + "\n")


def read_text(path, what="file"):
    """The text of a UTF-8 file; one that is not text (binary, another encoding) is a UserError
    naming it. A missing file raises OSError, which run_cli reports in one line too."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError:
        raise UserError(f"{what} {path}: not UTF-8 text") from None


def require_dir(path, what="folder"):
    if not os.path.isdir(path):
        raise UserError(f"{what} not found: {path}")
    return path


def require_file(path, what="file"):
    if not os.path.isfile(path):
        raise UserError(f"{what} not found: {path}")
    return path


def comma_list(cast):
    """An argparse type: comma-separated values, each read by cast."""
    def parse(text):
        try:
            return [cast(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated numbers, got {text!r}") from None
    return parse


def machine_description():
    """The CPU model and core count, for benchmark figures and model cards."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def usable_cores():
    """The cores this process may run on (its affinity, where the OS says; else all)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:
        return os.cpu_count() or 1


def run_cli(main, argv=None):
    """Run main(argv); turn expected failures into one line on stderr and exit code 2."""
    terminated = []

    def terminate(signum, frame):
        terminated.append(signum)
        raise SystemExit(128 + signum)  # unwinds: temp files are removed on the way out

    signal.signal(signal.SIGTERM, terminate)
    try:
        result = main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        # The SystemExit can land inside TensorFlow, which may re-raise it as another error
        # (a TypeError from tf.function's argument binding, say): a kill is still a kill.
        if terminated:
            sys.exit(128 + terminated[0])
        if isinstance(e, (UserError, OSError)):  # OSError: missing paths, disk full
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        if isinstance(e, UnicodeDecodeError):  # a reader that does not name its file yet
            print(f"error: a file read as text is not UTF-8 text ({e.reason} at byte "
                  f"{e.start})", file=sys.stderr)
            sys.exit(2)
        raise
    sys.exit(result or 0)
