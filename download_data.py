"""Download and unpack a Speech Commands archive: resumable, verified, safely extracted.

    python download_data.py --dataset v0.02 --out_dir data/speech_commands_v0.02

Fetches one of the official archives (or any `--url`) into `--archive_dir` with a progress bar.
An interrupted download leaves `<archive>.part`; the next run resumes it with an HTTP Range request
(a server that ignores Range makes it start over). Network errors are retried with bounded
exponential backoff. The archive's size and SHA-256 are checked when known (the table below, or
`--size` / `--sha256`); a mismatch deletes the download and exits 2. Extraction refuses absolute
paths, `..`, links and device files, unpacks into a temporary folder beside `--out_dir` and renames
it into place, so `--out_dir` appears only complete, and never after a refused archive. The
library is kws/download.py (kws.download.resolve and fetch_dataset do the work).
"""

import argparse
import re

from kws.common import run_cli
from kws.download import ARCHIVES, BASE_URL, fetch_dataset, resolve


def parse_sha256(value):
    value = value.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise argparse.ArgumentTypeError("expected 64 hex digits")
    return value


def non_negative_int(value):
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return n


def positive_float(value):
    x = float(value)
    if not x > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return x


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(ARCHIVES), default="v0.02",
                   help="official archive to fetch from " + BASE_URL)
    p.add_argument("--url", default=None, help="fetch this archive instead of --dataset")
    p.add_argument("--sha256", type=parse_sha256, default=None,
                   help="expected SHA-256 (overrides the table)")
    p.add_argument("--size", type=non_negative_int, default=None,
                   help="expected size in bytes (overrides the table)")
    p.add_argument("--out_dir", default=None,
                   help="folder to unpack into (default: data/<archive name>)")
    p.add_argument("--archive_dir", default=None,
                   help="where the archive is kept (default: the parent of --out_dir)")
    p.add_argument("--download_only", action="store_true", help="do not unpack")
    p.add_argument("--delete_archive", action="store_true", help="delete the archive once unpacked")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out_dir")
    p.add_argument("--retries", type=non_negative_int, default=5,
                   help="retries after a network error (exponential backoff, up to 60 s)")
    p.add_argument("--backoff", type=positive_float, default=2.0,
                   help="first retry delay in seconds")
    p.add_argument("--timeout", type=positive_float, default=60.0,
                   help="seconds to wait for the server on connect and on each read")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    target = resolve(args.dataset, args.url, args.size, args.sha256, args.out_dir,
                     args.archive_dir)
    return fetch_dataset(target, download_only=args.download_only, force=args.force,
                         delete_archive=args.delete_archive, retries=args.retries,
                         timeout=args.timeout, backoff=args.backoff,
                         progress=not args.no_progress)


if __name__ == "__main__":
    run_cli(main)
