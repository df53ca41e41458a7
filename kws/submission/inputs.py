"""What make_submission labels: the clips of a folder or of a list file, and the engine check."""

import os
from typing import NamedTuple

from kws.audio import check_source
from kws.common import UserError, read_text, require_file
from kws.folders import list_test_clips

RUNNERS = ("local", "ray")
RAY_HINT = "pip install 'ray[data]==2.60.0' (it is in requirements.txt: make setup installs it)"


def import_ray():
    """ray and ray.data, or a one-line UserError saying how to install them."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise UserError(f"--runner ray needs Ray Data ({e}): {RAY_HINT}") from None
    return ray


def read_test_list(path):
    """(sources, fnames) of a --test_list file, sorted by fname: one path or URI a line, blank
    lines and `#` comments skipped; each clip's fname is its line as written."""
    require_file(path, "test list")
    entries = [line.strip() for line in read_text(path, "test list").splitlines()]
    entries = sorted(e for e in entries if e and not e.startswith("#"))
    if not entries:
        raise UserError(f"no clips listed in {path}")
    repeated = next((a for a, b in zip(entries, entries[1:]) if a == b), None)
    if repeated:
        raise UserError(f"{path}: {repeated} is listed twice")
    for entry in entries:
        check_source(entry)
    return entries, list(entries)


class Clips(NamedTuple):
    """The clips to label: paths (or URIs), their fnames in the outputs, the labels their
    folders give (None for a flat folder or a list) and where they came from."""
    paths: list
    fnames: list
    folder_labels: list | None
    source: str


def list_inputs(test_data=None, test_list=None):
    """The Clips of --test_data or --test_list. fname is the path relative to the folder, or
    the list's line as written."""
    if test_list:
        paths, fnames = read_test_list(test_list)
        return Clips(paths, fnames, None, test_list)
    paths, folder_labels = list_test_clips(test_data)
    fnames = [os.path.relpath(p, test_data).replace(os.sep, "/") for p in paths]
    return Clips(paths, fnames, folder_labels, test_data)
