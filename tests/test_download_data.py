"""download_data.py and kws/download.py against a local HTTP server: resume, retries,
verification, safe extraction."""

import hashlib
import http.server
import io
import os
import re
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import download_data as dd
import kws.download
from kws.audio import read_wav, write_wav
from kws.common import UserError
from kws.download import ARCHIVES, Archive, download, extract

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- local server


class _Handler(http.server.BaseHTTPRequestHandler):
    timeout = 5  # a stuck client cannot hold a handler thread for long

    def log_message(self, *args):
        pass

    def do_GET(self):
        owner = self.server.owner
        rng = self.headers.get("Range")
        owner.requests.append(rng)
        action = owner.actions.pop(0) if owner.actions else "ok"
        data = owner.files.get(self.path.lstrip("/"))
        if data is None:
            self.send_error(404)
            return
        if isinstance(action, tuple) and action[0] == "status":
            self.send_error(action[1])
            return
        if isinstance(action, tuple) and action[0] == "stall":
            time.sleep(action[1])
        start = 0
        if rng and action != "ignore_range" and not owner.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if isinstance(action, tuple) and action[0] == "cut":
                self.wfile.write(body[: action[1]])  # then close: fewer bytes than announced
                self.close_connection = True
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


class ArchiveServer:
    """http.server on 127.0.0.1 (ephemeral port) in a thread; shuts itself down after 60 s.

    `actions` scripts the next responses: "ok", "ignore_range", ("cut", n) to send only n bytes
    of the body, ("status", code), ("stall", seconds) before answering.
    """

    def __init__(self):
        self.files, self.actions, self.requests = {}, [], []
        self.ignore_range = False
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.watchdog = threading.Timer(60, self.httpd.shutdown)
        self.watchdog.daemon = True
        self.watchdog.start()

    def url(self, name):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def stop(self):
        self.watchdog.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server():
    srv = ArchiveServer()
    yield srv
    srv.stop()


# ----------------------------------------------------------------------------- archives

LAYOUT = ["yes/0a7c2a8d_nohash_0.wav", "yes/0b09edd3_nohash_1.wav", "no/0a7c2a8d_nohash_0.wav",
          "left/1b2c3d4e_nohash_0.wav", "_background_noise_/white_noise.wav"]


def make_speech_commands_tar(tmp_path, name="speech_commands_test.tar.gz"):
    """A small archive in the official layout (members prefixed './' like the real ones)."""
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for rel in LAYOUT:
        seconds = 2 if rel.startswith("_background") else 1
        write_wav(src / rel, 0.3 * rng.uniform(-1, 1, 16000 * seconds).astype(np.float32))
    (src / "validation_list.txt").write_text("yes/0b09edd3_nohash_1.wav\n")
    (src / "testing_list.txt").write_text("left/1b2c3d4e_nohash_0.wav\n")
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src, arcname=".")
    return path.read_bytes()


def tar_bytes(members):
    """A tar.gz from (TarInfo, data or None) pairs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def regular(name, data=b"hello"):
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info, data


def special(name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def sha(data):
    return hashlib.sha256(data).hexdigest()


def leftovers(folder):
    """Temporary extraction folders or .part files left in folder."""
    return [p.name for p in Path(folder).iterdir()
            if p.name.endswith((".extracting", ".old", ".part"))]


@pytest.fixture
def archive(tmp_path, server):
    data = make_speech_commands_tar(tmp_path)
    server.files["sc.tar.gz"] = data
    return data


def args(server, tmp_path, *extra, data=None):
    out = ["--url", server.url("sc.tar.gz"), "--out_dir", str(tmp_path / "data" / "sc"),
           "--no_progress", "--backoff", "0.01", "--timeout", "5"]
    if data is not None:
        out += ["--sha256", sha(data), "--size", str(len(data))]
    return out + list(extra)


def assert_extracted(out_dir):
    for rel in LAYOUT:
        clip = read_wav(out_dir / rel)
        assert clip.shape == (16000,) and clip.dtype == np.float32 and np.abs(clip).max() > 0.1
    assert (out_dir / "testing_list.txt").read_text() == "left/1b2c3d4e_nohash_0.wav\n"


# ----------------------------------------------------------------------------- download


def test_table_has_the_four_official_archives():
    names = {a.filename for a in ARCHIVES.values()}
    assert names == {"speech_commands_v0.01.tar.gz", "speech_commands_v0.02.tar.gz",
                     "speech_commands_test_set_v0.01.tar.gz",
                     "speech_commands_test_set_v0.02.tar.gz"}
    for a in ARCHIVES.values():
        assert a.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", a.sha256)


def test_full_download_and_extract(tmp_path, server, archive):
    assert dd.main(args(server, tmp_path, data=archive)) == 0
    out_dir = tmp_path / "data" / "sc"
    assert_extracted(out_dir)
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(out_dir.stat().st_mode) == 0o777 & ~umask  # not mkdtemp's private 0700
    assert (tmp_path / "data" / "sc.tar.gz").read_bytes() == archive  # kept beside out_dir
    assert leftovers(tmp_path / "data") == []
    assert server.requests == [None]


def test_second_run_does_nothing_and_force_reextracts(tmp_path, server, archive, capsys):
    dd.main(args(server, tmp_path, data=archive))
    (tmp_path / "data" / "sc" / "yes" / "0a7c2a8d_nohash_0.wav").unlink()
    assert dd.main(args(server, tmp_path, data=archive)) == 0
    assert "already unpacked" in capsys.readouterr().err
    assert dd.main(args(server, tmp_path, "--force", data=archive)) == 0
    assert_extracted(tmp_path / "data" / "sc")
    assert server.requests == [None]  # the verified archive on disk was reused
    assert leftovers(tmp_path / "data") == []


def test_unchecked_download_is_not_called_verified(tmp_path, server, archive, capsys):
    assert dd.main(args(server, tmp_path)) == 0  # no --sha256 / --size: nothing to check
    err = capsys.readouterr().err
    assert ": verified" not in err
    assert f"downloaded ({len(archive)} bytes, not verified)" in err
    assert dd.main(args(server, tmp_path, "--force", data=archive)) == 0
    assert f"verified ({len(archive)} bytes, size ok, sha256 ok)" in capsys.readouterr().err


def test_truncated_download_resumes_with_range_on_next_run(tmp_path, server, archive):
    server.actions = [("cut", 40000)]
    with pytest.raises(UserError, match="run again to resume"):
        dd.main(args(server, tmp_path, "--retries", "0", data=archive))
    part = tmp_path / "data" / "sc.tar.gz.part"
    assert part.stat().st_size == 40000
    assert not (tmp_path / "data" / "sc").exists()
    assert dd.main(args(server, tmp_path, data=archive)) == 0
    assert server.requests == [None, "bytes=40000-"]
    assert_extracted(tmp_path / "data" / "sc")
    assert not part.exists()


def test_retries_resume_within_one_run(tmp_path, server, archive, capsys):
    server.actions = [("cut", 30000), ("cut", 30000)]
    dest = download(server.url("sc.tar.gz"), tmp_path / "a.tar.gz", size=len(archive),
                       sha256=sha(archive), backoff=0.01, progress=False)
    assert Path(dest).read_bytes() == archive
    assert server.requests == [None, "bytes=30000-", "bytes=60000-"]
    assert capsys.readouterr().err.count("retrying") == 2


def test_server_ignoring_range_restarts_from_zero(tmp_path, server, archive, capsys):
    server.ignore_range = True
    part = tmp_path / "a.tar.gz.part"
    part.write_bytes(b"\xff" * 5000)  # not a prefix of the archive: must be thrown away
    dest = download(server.url("sc.tar.gz"), tmp_path / "a.tar.gz", sha256=sha(archive),
                       backoff=0.01, progress=False)
    assert Path(dest).read_bytes() == archive
    assert server.requests == ["bytes=5000-"]
    assert "ignored the resume request" in capsys.readouterr().err


def test_complete_part_with_unknown_size_gets_416_and_is_kept(tmp_path, server, archive):
    (tmp_path / "a.tar.gz.part").write_bytes(archive)
    dest = download(server.url("sc.tar.gz"), tmp_path / "a.tar.gz", sha256=sha(archive),
                       backoff=0.01, progress=False)
    assert Path(dest).read_bytes() == archive
    assert server.requests == [f"bytes={len(archive)}-"]


def test_complete_part_with_known_size_needs_no_request(tmp_path, server, archive):
    (tmp_path / "a.tar.gz.part").write_bytes(archive)
    download(server.url("sc.tar.gz"), tmp_path / "a.tar.gz", size=len(archive),
                sha256=sha(archive), progress=False)
    assert server.requests == []


def test_wrong_checksum_is_refused_and_nothing_extracted(tmp_path, server, archive):
    with pytest.raises(UserError, match="checksum mismatch") as e:
        dd.main(args(server, tmp_path, "--sha256", "0" * 64))
    assert "\n" not in str(e.value)
    data = tmp_path / "data"
    assert sorted(p.name for p in data.iterdir()) == []  # no archive, no .part, no out_dir


def test_wrong_size_is_refused_before_downloading(tmp_path, server, archive):
    with pytest.raises(UserError, match=f"server reports {len(archive)} bytes, expected 123"):
        dd.main(args(server, tmp_path, "--size", "123"))
    assert list((tmp_path / "data").iterdir()) == []


def test_size_mismatch_after_download_deletes_the_part(tmp_path, server, archive):
    server.files["sc.tar.gz"] = archive[:-10]  # server announces and sends a shorter file
    server.actions = ["ok"]
    with pytest.raises(UserError, match="expected"):
        download(server.url("sc.tar.gz"), tmp_path / "a.tar.gz", size=len(archive),
                    progress=False)
    assert list(tmp_path.glob("a.tar.gz*")) == []


def test_http_404_is_not_retried(tmp_path, server):
    with pytest.raises(UserError, match="HTTP 404"):
        download(server.url("missing.tar.gz"), tmp_path / "a.tar.gz", progress=False)
    assert len(server.requests) == 1


def test_retries_are_bounded(tmp_path, server, archive):
    server.actions = [("status", 503)] * 10
    t0 = time.monotonic()
    with pytest.raises(UserError, match="failed after 3 attempts"):
        download(server.url("sc.tar.gz"), tmp_path / "a.tar.gz", retries=2, backoff=0.01,
                    progress=False)
    assert len(server.requests) == 3 and time.monotonic() - t0 < 5


def test_read_timeout_is_retried(tmp_path, server, archive):
    server.actions = [("stall", 1.0)]
    dest = download(server.url("sc.tar.gz"), tmp_path / "a.tar.gz", sha256=sha(archive),
                       timeout=0.2, backoff=0.01, progress=False)
    assert Path(dest).read_bytes() == archive and len(server.requests) == 2


def test_existing_archive_that_fails_verification_is_kept_and_refused(tmp_path, server, archive):
    (tmp_path / "a.tar.gz").write_bytes(b"stale")
    with pytest.raises(UserError, match="checksum mismatch.*delete it to download again"):
        download(server.url("sc.tar.gz"), tmp_path / "a.tar.gz", sha256=sha(archive),
                    progress=False)
    assert (tmp_path / "a.tar.gz").read_bytes() == b"stale" and server.requests == []


def test_a_server_answering_raw_bytes_gives_one_escaped_line(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    noise = bytes(range(256)) * 8  # control characters, newlines, NULs: 2048 bytes

    def answer():
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(noise)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/a.tar.gz"
    with pytest.raises(UserError, match="not an HTTP reply from the server") as e:
        download(url, tmp_path / "a.tar.gz", retries=3, backoff=0.01, timeout=5, progress=False)
    thread.join(5)
    message = str(e.value)
    assert message.isascii() and message.isprintable() and len(message) < 300
    assert "cannot connect" not in message and "\\x00" in message
    assert not (tmp_path / "a.tar.gz").exists()


def test_bad_flags_exit_2():
    for argv in (["--sha256", "xyz"], ["--retries", "-1"], ["--dataset", "v9"],
                 ["--timeout", "0"]):
        with pytest.raises(SystemExit) as e:
            dd.main(argv)
        assert e.value.code == 2


def test_default_paths_for_official_archive(tmp_path, monkeypatch, server, archive):
    monkeypatch.setattr(kws.download, "BASE_URL", server.url(""))
    server.files["speech_commands_test_set_v0.02.tar.gz"] = archive
    monkeypatch.setitem(ARCHIVES, "test_v0.02", Archive(
        "speech_commands_test_set_v0.02.tar.gz", len(archive), sha(archive)))
    monkeypatch.chdir(tmp_path)
    assert dd.main(["--dataset", "test_v0.02", "--no_progress", "--delete_archive"]) == 0
    assert_extracted(tmp_path / "data" / "speech_commands_test_set_v0.02")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "speech_commands_test_set_v0.02"]


# ----------------------------------------------------------------------------- extraction

MALICIOUS = {
    "dotdot": [regular("./yes/ok.wav"), regular("../evil")],
    "nested_dotdot": [regular("yes/../../evil")],
    "absolute": [regular("yes/ok.wav"), regular("/tmp/evil_download_data_test")],
    "symlink_to_etc": [regular("yes/ok.wav"), special("etc", tarfile.SYMTYPE, "/etc")],
    "relative_symlink": [special("yes/link", tarfile.SYMTYPE, "ok.wav")],
    "hardlink": [special("passwd", tarfile.LNKTYPE, "/etc/passwd")],
    "char_device": [special("null", tarfile.CHRTYPE)],
    "block_device": [special("sda", tarfile.BLKTYPE)],
    "fifo": [special("pipe", tarfile.FIFOTYPE)],
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_tar_is_refused_and_leaves_nothing(tmp_path, case):
    path = tmp_path / "bad.tar.gz"
    path.write_bytes(tar_bytes(MALICIOUS[case]))
    out_dir = tmp_path / "out" / "target"
    with pytest.raises(UserError, match="unsafe archive member") as e:
        extract(path, out_dir)
    assert "\n" not in str(e.value)
    assert not out_dir.exists() and list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "evil").exists() and not (tmp_path / "out" / "evil").exists()
    assert not Path("/tmp/evil_download_data_test").exists()


@pytest.mark.parametrize("case", ["dotdot", "symlink_to_etc", "hardlink", "char_device"])
def test_stdlib_data_filter_is_a_second_line_of_defence(tmp_path, monkeypatch, case):
    # (The 'data' filter strips a leading '/' rather than refusing, so 'absolute' is ours alone.)
    # our checks off
    monkeypatch.setattr(kws.download, "_safe_tar_members", lambda tar, root: iter(tar))
    path = tmp_path / "bad.tar.gz"
    path.write_bytes(tar_bytes(MALICIOUS[case]))
    with pytest.raises(UserError, match="unsafe archive bad.tar.gz"):
        extract(path, tmp_path / "out" / "target")
    assert list((tmp_path / "out").iterdir()) == []
    assert not Path("/tmp/evil_download_data_test").exists()


def test_malicious_archive_over_http_exits_2_with_one_line(tmp_path, server):
    data = tar_bytes([regular("./yes/ok.wav"), regular("../evil")])
    server.files["sc.tar.gz"] = data
    proc = subprocess.run([sys.executable, "download_data.py", *args(server, tmp_path, data=data)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: unsafe archive member '../evil'")
    assert not (tmp_path / "data" / "sc").exists() and not (tmp_path / "data" / "evil").exists()
    assert leftovers(tmp_path / "data") == []


def test_corrupt_archive_is_refused(tmp_path):
    good = tar_bytes([regular("yes/a.wav", b"x" * 50000)])
    for name, data in [("random", os.urandom(3000)), ("truncated", good[: len(good) // 2])]:
        path = tmp_path / f"{name}.tar.gz"
        path.write_bytes(data)
        with pytest.raises(UserError, match="corrupt or unsupported archive"):
            extract(path, tmp_path / name)
        assert not (tmp_path / name).exists()
    assert leftovers(tmp_path) == []


def test_empty_archive_is_refused_and_out_dir_kept(tmp_path):
    for name, members in [("empty", []), ("folders", [special("yes", tarfile.DIRTYPE)])]:
        path = tmp_path / f"{name}.tar.gz"
        path.write_bytes(tar_bytes(members))
        (tmp_path / "out").mkdir(exist_ok=True)
        (tmp_path / "out" / "mine.txt").write_text("keep")
        with pytest.raises(UserError, match="holds no files"):
            extract(path, tmp_path / "out", force=True)
        assert (tmp_path / "out" / "mine.txt").read_text() == "keep"
        with pytest.raises(UserError, match="holds no files"):
            extract(path, tmp_path / name)
        assert not (tmp_path / name).exists()
    assert leftovers(tmp_path) == []


def test_non_empty_out_dir_needs_force(tmp_path):
    path = tmp_path / "a.tar.gz"
    path.write_bytes(tar_bytes([regular("yes/a.wav")]))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(UserError, match="--force"):
        extract(path, tmp_path / "out")
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep"
    assert extract(path, tmp_path / "out", force=True) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["yes"]
    assert leftovers(tmp_path) == []


def _zip_bytes(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


def test_zip_archives(tmp_path):
    good = tmp_path / "good.zip"
    good.write_bytes(_zip_bytes([("yes/a.wav", b"abc", 0o100644), ("no/b.wav", b"d", 0o100644)]))
    assert extract(good, tmp_path / "good") == 2
    assert (tmp_path / "good" / "yes" / "a.wav").read_bytes() == b"abc"
    for name, entry in [("dotdot", ("../evil", b"x", 0o100644)),
                        ("absolute", ("/evil", b"x", 0o100644)),
                        ("symlink", ("etc", b"/etc", 0o120777))]:
        bad = tmp_path / f"{name}.zip"
        bad.write_bytes(_zip_bytes([("yes/a.wav", b"abc", 0o100644), entry]))
        with pytest.raises(UserError, match="unsafe archive member"):
            extract(bad, tmp_path / name)
        assert not (tmp_path / name).exists()
    assert not (tmp_path.parent / "evil").exists() and leftovers(tmp_path) == []
