"""Download and unpack a Speech Commands archive: resumable, verified, safely extracted.

The official archives and what is known of them (ARCHIVES); `download` fetches a URL through
`<file>.part` with HTTP Range resumes and bounded exponential backoff on network errors, then checks
size and SHA-256; `extract` refuses absolute paths, `..`, links and device files and renames a
complete temporary folder into place; `resolve` and `fetch_dataset` are what download_data.py (the
command line) runs.
"""

import dataclasses
import hashlib
import http.client
import os
import re
import stat
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import PurePosixPath

from tqdm import tqdm

from kws.common import UserError, atomic_dir

BASE_URL = "https://download.tensorflow.org/data/"
CHUNK_BYTES = 1 << 20
USER_AGENT = "kws-download-data/1.0 (python urllib)"
RETRYABLE_HTTP_CODES = {408, 425, 429, 500, 502, 503, 504}


@dataclasses.dataclass(frozen=True)
class Archive:
    filename: str
    size: int | None = None  # bytes; None when not known for sure
    sha256: str | None = None  # hex; None when not known for sure


# Sizes and SHA-256 from tensorflow_datasets (url_checksums/speech_commands.txt) and torchaudio
# (datasets/speechcommands.py); the v0.01 size from a wget log. Unknown values stay None: only what
# is known is verified (pass --sha256 / --size to add a check).
ARCHIVES = {
    "v0.01": Archive("speech_commands_v0.01.tar.gz", 1489096277,
                     "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d"),
    "v0.02": Archive("speech_commands_v0.02.tar.gz", 2428923189,
                     "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"),
    "test_v0.01": Archive("speech_commands_test_set_v0.01.tar.gz"),
    "test_v0.02": Archive("speech_commands_test_set_v0.02.tar.gz", 112563277,
                          "cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df"),
}


class TransientError(Exception):
    """A failure worth retrying: the connection dropped, timed out, or the server was busy."""


def shown(text, limit=80):
    """Text a server sent (or an error quoting it), fit for a one-line message: as is when short
    and printable ASCII, else escaped like ascii() and cut to limit characters."""
    text = str(text)
    if text.isascii() and text.isprintable() and len(text) <= limit:
        return text
    more = f"... ({len(text)} characters)" if len(text) > limit else ""
    return ascii(text[:limit]) + more


# ----------------------------------------------------------------------------- download


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path, size=None, sha256=None, delete=True):
    """Raise UserError (deleting the file) when its size or SHA-256 is not the expected one."""
    actual = os.path.getsize(path)
    problem = None
    if size is not None and actual != size:
        problem = f"size mismatch: got {actual} bytes, expected {size}"
    elif sha256 is not None:
        digest = sha256_of(path)
        if digest != sha256.lower():
            problem = f"checksum mismatch: sha256 {digest}, expected {sha256.lower()}"
    if problem and not delete:
        raise UserError(f"{path}: {problem}")
    if problem:
        os.remove(path)
        raise UserError(f"{os.path.basename(path)}: {problem} (download deleted)")


def _content_range(value):
    """'bytes 100-199/200' -> (100, 200); total None when '*'."""
    m = re.match(r"bytes\s+(\d+)-\d+/(\d+|\*)", value or "")
    if not m:
        return None, None
    return int(m.group(1)), (None if m.group(2) == "*" else int(m.group(2)))


def _open(url, start, timeout):
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and start:
            return e  # caller decides: the .part may already be whole
        if e.code in RETRYABLE_HTTP_CODES:
            raise TransientError(f"HTTP {e.code} {shown(e.reason)}") from None
        raise UserError(f"{url}: HTTP {e.code} {shown(e.reason)}") from None
    except ValueError as e:  # unknown url type
        raise UserError(f"{url}: {shown(e)}") from None
    except http.client.BadStatusLine as e:
        if isinstance(e, http.client.RemoteDisconnected):  # closed before answering
            raise TransientError(f"connection closed by the server: {shown(e)}") from None
        # The status line is whatever the server sent: not worth retrying a server that is no
        # HTTP server (or a wrong port)
        raise UserError(f"{url}: not an HTTP reply from the server: {shown(e.line)}") from None
    except http.client.HTTPException as e:
        raise TransientError(f"bad HTTP reply from the server: {shown(e)}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise TransientError(f"cannot connect: {shown(reason)}") from None


def fetch_once(url, part, expected_size=None, timeout=60.0, progress=True):
    """One HTTP request appending to `part` (resuming from its size). Raises TransientError."""
    have = os.path.getsize(part) if os.path.exists(part) else 0
    if expected_size is not None and have > expected_size:
        os.remove(part)
        have = 0
    if expected_size is not None and have == expected_size:
        return
    resp = _open(url, have, timeout)
    if isinstance(resp, urllib.error.HTTPError):  # 416: nothing left to send from `have` on
        m = re.search(r"/(\d+)\s*$", resp.headers.get("Content-Range") or "")
        if m and int(m.group(1)) == have:
            return
        os.remove(part)  # the .part is longer than the file: start over
        raise TransientError(f"server refused to resume at byte {have}; starting over")
    with resp:
        start, total = 0, None
        if have and resp.status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != have:
                start, total = 0, None
        if have and start != have:
            # The server ignored Range (200) or sent another range: the body is the whole file.
            if resp.status == 206:
                raise TransientError("server answered a different byte range")
            print(f"note: server ignored the resume request; restarting {os.path.basename(part)}",
                  file=sys.stderr)
            have = 0
        if total is None:
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else None
        if expected_size is not None and total is not None and total != expected_size:
            if os.path.exists(part):
                os.remove(part)
            raise UserError(f"{url}: server reports {total} bytes, expected {expected_size}")
        _stream(resp, part, have, total, progress)


def _stream(resp, part, have, total, progress):
    name = os.path.basename(part).removesuffix(".part")
    with open(part, "ab" if have else "wb") as f, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
            disable=not progress, mininterval=0.5) as bar:
        while True:
            try:
                chunk = resp.read(CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as e:  # reset, timeout, IncompleteRead
                raise TransientError(f"connection lost after {have} bytes ({shown(repr(e))})") \
                    from None
            if not chunk:
                break
            f.write(chunk)
            have += len(chunk)
            bar.update(len(chunk))
    if total is not None and have < total:
        raise TransientError(f"connection closed after {have} of {total} bytes")


def download(url, dest, size=None, sha256=None, retries=5, timeout=60.0, backoff=2.0,
             max_backoff=60.0, progress=True):
    """Download url to dest (via dest + '.part', resumable) and verify it. Returns dest.

    A dest that already exists is verified and kept without any request; if it fails, it is left
    alone (it may be a typo in --sha256) and the user is asked to delete it.
    """
    dest = os.fspath(dest)
    if os.path.exists(dest):
        try:
            verify(dest, size, sha256, delete=False)
        except UserError as e:
            raise UserError(f"{e} (delete it to download again)") from None
        print(f"{dest}: already downloaded", file=sys.stderr)
        return dest
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    part = dest + ".part"
    for attempt in range(retries + 1):
        try:
            fetch_once(url, part, size, timeout, progress)
            break
        except TransientError as e:
            if attempt == retries:
                raise UserError(f"{url}: download failed after {retries + 1} attempts: {e} "
                                f"(run again to resume)") from None
            delay = min(max_backoff, backoff * 2 ** attempt)
            print(f"warning: {e}; retrying in {delay:.1f} s ({attempt + 1}/{retries})",
                  file=sys.stderr)
            time.sleep(delay)
    verify(part, size, sha256)
    os.replace(part, dest)
    return dest


# ----------------------------------------------------------------------------- extract


def check_member_name(name):
    """Refuse a member path that is absolute or climbs out of the target with '..'."""
    if not name or "\x00" in name:
        raise UserError(f"unsafe archive member {name!r}: empty or NUL in name")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        raise UserError(f"unsafe archive member {name!r}: absolute path")
    if ".." in PurePosixPath(posix).parts:
        raise UserError(f"unsafe archive member {name!r}: '..' leaves the target folder")


def _check_inside(root, name):
    root = os.path.realpath(root)
    target = os.path.realpath(os.path.join(root, name))
    if target != root and not target.startswith(root + os.sep):
        raise UserError(f"unsafe archive member {name!r}: lands outside the target folder")


def _safe_tar_members(tar, root):
    for member in tar:
        check_member_name(member.name)
        if member.issym() or member.islnk():
            raise UserError(f"unsafe archive member {member.name!r}: links are refused "
                            f"(-> {member.linkname!r})")
        if not (member.isreg() or member.isdir()):
            raise UserError(f"unsafe archive member {member.name!r}: device or special file")
        _check_inside(root, member.name)
        yield member


def _extract_tar(path, root):
    # Stream mode: one pass over the (possibly 2 GB) gzip; each member is checked before it is
    # written, and the stdlib 'data' filter checks it again.
    with tarfile.open(path, "r|*") as tar:
        tar.extractall(root, members=_safe_tar_members(tar, root), filter="data")


def _extract_zip(path, root):
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        for info in infos:
            check_member_name(info.filename)
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind == stat.S_IFLNK:
                raise UserError(f"unsafe archive member {info.filename!r}: links are refused")
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise UserError(f"unsafe archive member {info.filename!r}: device or special file")
            _check_inside(root, info.filename)
        for info in infos:
            zf.extract(info, root)


def extract(archive, out_dir, force=False):
    """Unpack a .tar(.gz/.bz2/.xz) or .zip archive into out_dir, atomically and safely.

    Returns the number of files written. out_dir must not exist, be empty, or force must be set.
    """
    out_dir = os.path.abspath(out_dir)
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not force:
        raise UserError(f"{out_dir} exists and is not empty (use --force to replace it)")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"{out_dir} exists and is not a folder")
    with atomic_dir(out_dir) as tmp:
        with open(archive, "rb") as f:
            is_zip = f.read(4) == b"PK\x03\x04"
        try:
            (_extract_zip if is_zip else _extract_tar)(archive, tmp)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as e:
            if isinstance(e, tarfile.FilterError):
                raise UserError(f"unsafe archive {os.path.basename(archive)}: {e}") from None
            raise UserError(f"{archive}: corrupt or unsupported archive ({shown(e)})") from None
        files = sum(len(names) for _, _, names in os.walk(tmp))
        if not files:  # an empty archive (or folders only) must not replace out_dir
            raise UserError(f"{archive}: the archive holds no files")
    return files


# ----------------------------------------------------------------------------- the data sets


def archive_filename(url):
    name = os.path.basename(urllib.parse.urlparse(url).path)
    if not name:
        raise UserError(f"{url}: cannot tell the archive's file name from the URL")
    return name


def strip_archive_ext(name):
    for ext in (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name + ".d"


@dataclasses.dataclass(frozen=True)
class Target:
    """What to fetch, how to check it, and where it goes."""
    url: str
    filename: str
    archive: str  # local path of the archive
    out_dir: str
    size: int | None
    sha256: str | None


def resolve(dataset, url=None, size=None, sha256=None, out_dir=None, archive_dir=None):
    """The Target of an official --dataset or of any --url; size and sha256 override the table.
    out_dir defaults to data/<archive name>, archive_dir to out_dir's parent."""
    if url:
        entry = Archive(archive_filename(url))
    else:
        entry = ARCHIVES[dataset]
        url = BASE_URL + entry.filename
    out_dir = out_dir or os.path.join("data", strip_archive_ext(entry.filename))
    archive_dir = archive_dir or os.path.dirname(os.path.abspath(out_dir))
    return Target(url, entry.filename, os.path.join(archive_dir, entry.filename), out_dir,
                  size if size is not None else entry.size, sha256 or entry.sha256)


def fetch_dataset(target, download_only=False, force=False, delete_archive=False, retries=5,
                  timeout=60.0, backoff=2.0, progress=True):
    """Download, verify and (unless download_only) unpack target, saying each step on stderr.
    A non-empty out_dir is left alone unless force. Returns the exit code, 0."""
    out_dir, archive = target.out_dir, target.archive
    if not download_only and os.path.isdir(out_dir) and os.listdir(out_dir) and not force:
        print(f"{out_dir}: already unpacked, nothing to do (--force to redo)", file=sys.stderr)
        return 0
    if target.size is None and target.sha256 is None:
        print(f"warning: no size or checksum known for {target.filename}; not verified "
              f"(pass --sha256)", file=sys.stderr)
    download(target.url, archive, size=target.size, sha256=target.sha256, retries=retries,
             timeout=timeout, backoff=backoff, progress=progress)
    checked = [c for c, known in (("size ok", target.size), ("sha256 ok", target.sha256))
               if known is not None]
    size = os.path.getsize(archive)
    if checked:
        print(f"{archive}: verified ({size} bytes, {', '.join(checked)})", file=sys.stderr)
    else:  # nothing was known to check it against: say so, not "verified"
        print(f"{archive}: downloaded ({size} bytes, not verified)", file=sys.stderr)
    if download_only:
        return 0
    files = extract(archive, out_dir, force=force)
    print(f"{out_dir}: unpacked {files} files", file=sys.stderr)
    if delete_archive:
        os.remove(archive)
    return 0
