"""serve.py as an attacker would use it, on loopback only: tiny files holding hours of audio,
uploads that starve listeners or outlive their client, idle and slow connections that hold the
slots, pages of other sites, out-of-range settings, a failed upload on the page.

Each test runs the real server (kws.serve.server.start_server, connection guard included) in a
thread of this process on 127.0.0.1, attacks it, and then checks that a normal listener is still
answered correctly (the hops an offline Spotter computes on the same audio) and on time (ready
within READY_S, every frame within FRAME_S: generous bounds for a loaded 2-core machine; the
100 ms target is benchmark_serve.py --attack's). Other clients come from 127.0.0.2-127.0.0.9,
which Linux routes to the loopback interface, so that per-client limits can be exercised. Every
test is bounded by BOUND_S; the counts are small.
"""

import asyncio
import dataclasses
import gc
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kws import audio as kws_audio
from kws.runtime import load_streaming_model
from kws.serve.config import LIMITS, ServerConfig
from kws.serve.hosts import is_loopback
from kws.serve.protocol import feed_frame
from kws.serve.server import start_server
from kws.shipped import DEFAULT_MODEL
from kws.streaming import Spotter, load_settings

REPO = Path(__file__).resolve().parents[1]
READY_S, FRAME_S, BOUND_S = 3.0, 1.0, 90.0
FRAME = 1600  # the page's 100 ms
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def config(**changes):
    return ServerConfig(model=DEFAULT_MODEL, labels=None,
                        settings=load_settings(DEFAULT_MODEL), **changes)


class Server:
    """The server on 127.0.0.1:<free port>, its event loop in a thread of its own."""

    def __init__(self, **changes):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.running = self.call(start_server(config(**changes), "127.0.0.1", 0))
        self.url = self.running.url.rstrip("/")
        self.port = int(self.url.rsplit(":", 1)[1])
        self.app = self.running.app

    def call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(BOUND_S)

    def close(self):
        self.call(self.running.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def start():
    """start(**config changes) -> a running Server, closed after the test."""
    servers = []

    def make(**changes):
        servers.append(Server(**changes))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def pcm16(samples):
    return (np.clip(samples, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()


def noise(seconds, level=0.05, seed=0):
    return (level * np.random.RandomState(seed).randn(int(seconds * 16000))).astype(np.float32)


LISTENER_AUDIO = noise(1.5, seed=7)


@pytest.fixture(scope="module")
def expected_hops():
    """The hops a listener must get for LISTENER_AUDIO: an offline Spotter's."""
    model, labels = load_streaming_model(DEFAULT_MODEL, None, 1,
                                         load_settings(DEFAULT_MODEL).stride_ms)
    spotter = Spotter(model, labels, load_settings(DEFAULT_MODEL))
    heard = np.frombuffer(pcm16(LISTENER_AUDIO), "<i2").astype(np.float32) / 32768
    hops = []
    for start in range(0, len(heard), FRAME):
        hops += feed_frame(spotter, heard[start:start + FRAME])["hops"]
    return hops


def session(source="127.0.0.1"):
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0),
                                                                limit=0))


async def normal_listener(url, expected):
    """A page's listener: ready in time, a result for every frame in time, the right hops."""
    async with session() as s:
        started = time.monotonic()
        async with s.ws_connect(url + "/ws", headers={"Origin": url}) as ws:
            ready = await ws.receive_json(timeout=READY_S)
            assert ready["type"] == "ready", ready
            assert time.monotonic() - started < READY_S
            hops = []
            for start in range(0, len(LISTENER_AUDIO), FRAME):
                sent = time.monotonic()
                await ws.send_bytes(pcm16(LISTENER_AUDIO[start:start + FRAME]))
                result = await ws.receive_json(timeout=FRAME_S)
                assert result["type"] == "result", result
                assert time.monotonic() - sent < FRAME_S
                hops += result["hops"]
    assert [h[0] for h in hops] == [h[0] for h in expected]
    assert np.allclose([h[1] for h in hops], [h[1] for h in expected], atol=0.002)


def still_serves(server, expected):
    asyncio.run(asyncio.wait_for(normal_listener(server.url, expected), BOUND_S))


def bounded(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, BOUND_S))


def flac_bytes(samples, rate=16000):
    f = io.BytesIO()
    sf.write(f, samples, rate, format="FLAC")
    return f.getvalue()


def wav_bytes(samples, rate=16000):
    f = io.BytesIO()
    sf.write(f, samples, rate, format="WAV", subtype="PCM_16")
    return f.getvalue()


async def post(url, body, source="127.0.0.1", query="", headers=None):
    async with session(source) as s:
        async with s.post(url + "/api/label" + query, data=body, headers=headers or {}) as r:
            return r.status, await r.json()


def held_upload(port, source, length=100_000, sent=1000):
    """A raw upload that sends its headers and part of its body, then waits."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                    source_address=(source, 0))
    sock.sendall(f"POST /api/label HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 f"Content-Length: {length}\r\n\r\n".encode() + bytes(sent))
    return sock


def closed_by_server(sock, within):
    """True if the server closes (or answers and closes) sock within `within` seconds."""
    sock.settimeout(0.2)
    end = time.monotonic() + within
    data = b""
    while time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionError:
            return True, data
        if not chunk:
            return True, data
        data += chunk
    return False, data


def wait_until(condition, within):
    end = time.monotonic() + within
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# ---- uploads: audio, not bytes ------------------------------------------------------------------

def test_a_small_file_holding_long_audio_is_refused_from_its_header(start, expected_hops):
    server = start(max_upload_seconds=60)
    silence = flac_bytes(np.zeros(600 * 16000, np.float32))  # 10 minutes in a few KB
    low_rate = wav_bytes(np.zeros(300 * 100, np.float32), rate=100)  # 5 minutes in 60 KB
    assert len(silence) < 100_000 and len(low_rate) < 100_000

    async def attack():
        replies = []
        for body in (silence, low_rate, wav_bytes(noise(2.0))):
            started = time.monotonic()
            replies.append((*await post(server.url, body), time.monotonic() - started))
        return replies

    (s1, r1, t1), (s2, r2, t2), (ok, result, _) = bounded(attack())
    for status, reply, seconds in ((s1, r1, t1), (s2, r2, t2)):
        assert status == 413 and "60 s limit" in reply["error"], reply
        assert "--max_upload_seconds" in reply["error"] and seconds < 2.0  # no decoding
    assert "600.0 s" in r1["error"] and "300.0 s" in r2["error"]
    assert ok == 200 and result["duration_ms"] == 2000  # within the limit: labelled
    still_serves(server, expected_hops)


class HeaderSaysNothing:
    """A sound file whose header gives no length (as some streams' do): the limit must then
    hold while decoding."""

    def __init__(self, f):
        self.f = f
        self.frames = 0
        self.samplerate, self.channels = f.samplerate, f.channels

    def read(self, *args, **kwargs):
        return self.f.read(*args, **kwargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_audio_past_the_limit_is_refused_while_decoding(start, expected_hops, monkeypatch):
    server = start(max_upload_seconds=3)
    real_open = kws_audio._open
    monkeypatch.setattr(kws_audio, "_open", lambda *a: HeaderSaysNothing(real_open(*a)))
    status, reply = bounded(post(server.url, wav_bytes(noise(8.0))))
    assert status == 413 and "more than 3 s" in reply["error"], reply
    monkeypatch.undo()
    still_serves(server, expected_hops)


# ---- uploads: how many, and never before a listener ----------------------------------------------

def test_uploads_are_capped_per_client_and_in_all(start, expected_hops):
    server = start(max_uploads=2, max_uploads_per_client=1)
    small = wav_bytes(noise(1.5))
    first = held_upload(server.port, "127.0.0.2")
    assert wait_until(lambda: sum(server.app.uploads.values()) == 1, 5)
    same_client = bounded(post(server.url, small, source="127.0.0.2"))
    other = held_upload(server.port, "127.0.0.3")
    assert wait_until(lambda: sum(server.app.uploads.values()) == 2, 5)
    third_client = bounded(post(server.url, small, source="127.0.0.4"))
    assert same_client[0] == 429 and "at most 1" in same_client[1]["error"], same_client
    assert third_client[0] == 503 and "busy" in third_client[1]["error"], third_client
    still_serves(server, expected_hops)
    first.close()
    other.close()
    assert wait_until(lambda: not server.app.uploads, 5)  # the slots come back
    assert bounded(post(server.url, small, source="127.0.0.2"))[0] == 200


def longest_upload(seconds):
    return flac_bytes(np.zeros(int(seconds * 16000), np.float32))


def test_uploads_of_the_longest_audio_do_not_hold_up_a_listener(start, expected_hops):
    server = start(max_uploads=2, max_uploads_per_client=1, max_upload_seconds=600)
    body = longest_upload(600)

    async def attack():
        import aiohttp

        uploads = [asyncio.ensure_future(post(server.url, body, source=f"127.0.0.{i}"))
                   for i in (2, 3)]
        for _ in range(100):
            if server.app.upload_jobs == 2:
                break
            await asyncio.sleep(0.05)
        assert server.app.upload_jobs == 2  # both are labelling now
        try:
            await normal_listener(server.url, expected_hops)
            await normal_listener(server.url, expected_hops)  # a new one, too
        finally:
            for task in uploads:
                task.cancel()
            await asyncio.gather(*uploads, return_exceptions=True)
        assert all(t.cancelled() or isinstance(t.exception(), aiohttp.ClientError)
                   for t in uploads)

    bounded(attack())
    assert wait_until(lambda: server.app.upload_jobs == 0, 3)


def test_a_client_that_disconnects_stops_its_uploads_work(start, expected_hops):
    server = start(max_upload_seconds=600)
    body = longest_upload(600)  # about 8 s of CPU when labelled to the end

    async def attack():
        task = asyncio.ensure_future(post(server.url, body, source="127.0.0.2"))
        for _ in range(100):
            if server.app.upload_jobs:
                break
            await asyncio.sleep(0.05)
        assert server.app.upload_jobs == 1
        await asyncio.sleep(0.5)
        task.cancel()  # the client goes away
        await asyncio.gather(task, return_exceptions=True)

    bounded(attack())
    time.sleep(0.5)
    cpu = time.process_time()
    time.sleep(2.0)
    assert time.process_time() - cpu < 0.25  # nothing labels for nobody (else ~1 core)
    assert server.app.upload_jobs == 0
    still_serves(server, expected_hops)


def test_an_upload_body_that_trickles_is_cut_off(start, expected_hops):
    server = start(body_timeout=1.0, max_uploads_per_client=1)
    sock = held_upload(server.port, "127.0.0.2")
    closed, reply = closed_by_server(sock, 4.0)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"--body_timeout" in reply
    assert wait_until(lambda: not server.app.uploads, 3)  # its slot is free again
    assert bounded(post(server.url, wav_bytes(noise(1.2)), source="127.0.0.2"))[0] == 200
    still_serves(server, expected_hops)


# ---- listeners: idle ones, too many from one address, slow connections ---------------------------

def test_a_listener_without_audio_is_closed_with_a_reason(start, expected_hops):
    server = start(idle_seconds=1.0)
    before = len(server_sockets_alive())  # other tests' servers may still hold some
    async def idle(settings_only):
        async with session("127.0.0.2") as s:
            async with s.ws_connect(server.url + "/ws") as ws:
                assert (await ws.receive_json(timeout=READY_S))["type"] == "ready"
                started = time.monotonic()
                if settings_only:  # settings are not audio: they do not keep a stream open
                    for _ in range(4):
                        await ws.send_str('{"type": "settings", "detection_threshold": 0.8}')
                        assert (await ws.receive_json(timeout=1))["type"] == "settings"
                        await asyncio.sleep(0.3)
                error = await ws.receive_json(timeout=4)
                await ws.receive(timeout=2)
                return error, ws.close_code, time.monotonic() - started

    for settings_only in (False, True):
        error, code, seconds = bounded(idle(settings_only))
        assert error == {"type": "error", "message": "idle: no audio for 1 s"}
        assert code == 1008 and seconds < 2.5
    assert wait_until(lambda: len(server_sockets_alive()) <= before, 3)  # closed ones freed
    still_serves(server, expected_hops)


def server_sockets_alive():
    """The server-side WebSockets still in memory (a closed one must be freed: a socket the
    server closed once stayed alive through aiohttp's heartbeat timer)."""
    from aiohttp.web_ws import WebSocketResponse

    gc.collect()
    # type(), not isinstance(): isinstance asks a weak proxy (another library may leave one in
    # the heap) for its __class__, which raises once its object is gone
    return [o for o in gc.get_objects() if issubclass(type(o), WebSocketResponse)]


def test_one_address_cannot_take_every_listener_slot(start, expected_hops):
    server = start(max_listeners=4, max_listeners_per_client=2, idle_seconds=2.0)
    before = len(server_sockets_alive())
    async def attack():
        async with session("127.0.0.2") as s:
            sockets = [await s.ws_connect(server.url + "/ws") for _ in range(4)]
            first = [await ws.receive_json(timeout=READY_S) for ws in sockets]
            await normal_listener(server.url, expected_hops)  # while the attacker holds two
            closed = [await ws.receive(timeout=4) for ws in sockets[:2]]  # their idle end
            for ws in sockets:
                await ws.close()
            return first, closed, [ws.close_code for ws in sockets]

    first, closed, codes = bounded(attack())
    assert [m["type"] for m in first] == ["ready", "ready", "error", "error"]
    assert "too many listeners from your address (at most 2)" in first[2]["message"]
    assert codes[2:] == [1013, 1013]
    assert [json.loads(m.data)["message"] for m in closed] == ["idle: no audio for 2 s"] * 2
    assert codes[:2] == [1008, 1008]
    assert wait_until(lambda: not server.app.listeners, 3)
    assert wait_until(lambda: len(server_sockets_alive()) <= before, 3)
    still_serves(server, expected_hops)


def test_connections_that_never_finish_a_request_are_closed(start, expected_hops):
    server = start(header_timeout=1.0)
    slow = []
    for i in range(40):  # slow loris: headers begun, never ended
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5,
                                        source_address=("127.0.0.2", 0))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Wait: " + b"a" * i)
        slow.append(sock)
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=5)  # sends nothing
    kept = socket.create_connection(("127.0.0.1", server.port), timeout=5)  # keep-alive
    kept.sendall(f"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    still_serves(server, expected_hops)  # while they hang
    results = [closed_by_server(sock, 3.0) for sock in [*slow, idle, kept]]
    for sock in [*slow, idle, kept]:
        sock.close()
    assert all(closed for closed, _ in results)
    assert results[-1][1].startswith(b"HTTP/1.1 200")  # answered, then closed when idle
    still_serves(server, expected_hops)


# ---- other sites ---------------------------------------------------------------------------------

def test_pages_of_other_sites_and_other_host_names_are_refused(start, expected_hops):
    server = start(allow_origins=("https://trusted.example",))
    import aiohttp

    own = server.url
    other_port = f"http://127.0.0.1:{server.port + 1}"

    async def ask(path, headers, method="GET"):
        async with session() as s:
            if path == "/ws":
                try:
                    async with s.ws_connect(own + path, headers=headers) as ws:
                        return 101, (await ws.receive_json(timeout=READY_S))["type"]
                except aiohttp.WSServerHandshakeError as e:
                    return e.status, ""
            body = wav_bytes(noise(1.2)) if method == "POST" else None
            async with s.request(method, own + path, headers=headers, data=body) as r:
                return r.status, await r.text()

    async def attack():
        out = {}
        for name, headers in {"evil": {"Origin": "http://evil.example"},
                              "null": {"Origin": "null"},
                              "other port": {"Origin": other_port},
                              "rebinding": {"Host": f"evil.example:{server.port}"},
                              "same": {"Origin": own},
                              "allowed": {"Origin": "https://trusted.example"},
                              "no origin": {}}.items():
            out[name] = [await ask("/ws", headers), await ask("/api/info", headers),
                         await ask("/api/label", headers, "POST")]
        out["page rebinding"] = [await ask("/", {"Host": "evil.example"})]
        return out

    out = bounded(attack())
    for name in ("evil", "null", "other port", "rebinding", "page rebinding"):
        assert [status for status, _ in out[name]] == [403] * len(out[name]), (name, out[name])
    assert "--allow_origin" in out["evil"][1][1] and "--allow_host" in out["rebinding"][1][1]
    for name in ("same", "allowed", "no origin"):
        assert [status for status, _ in out[name]] == [101, 200, 200], (name, out[name])
    still_serves(server, expected_hops)


def test_pages_carry_security_headers_and_no_inline_script(start, expected_hops):
    server = start()
    async def fetch():
        async with session() as s:
            out = {}
            for path in ("/", "/static/app.js", "/api/info", "/nope"):
                async with s.get(server.url + path) as r:
                    out[path] = (r.status, dict(r.headers))
            return out

    out = bounded(fetch())
    assert {path: status for path, (status, _) in out.items()} == {
        "/": 200, "/static/app.js": 200, "/api/info": 200, "/nope": 404}
    for path, (_, headers) in out.items():
        csp = headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, (path, headers)
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert headers.get("X-Content-Type-Options") == "nosniff"
        assert headers.get("X-Frame-Options") == "DENY"
    page = (REPO / "kws" / "web" / "index.html").read_text().lower()
    assert page.count("<script") == page.count("<script src=") == 1  # no inline script
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", page)  # no inline event handlers
    still_serves(server, expected_hops)


# ---- settings ------------------------------------------------------------------------------------

BAD_SETTINGS = [
    ('{"type": "settings", "average_window_ms": 1e308}', "average_window_ms must be in"),
    ('{"type": "settings", "suppression_ms": 1e12}', "suppression_ms must be in"),
    ('{"type": "settings", "minimum_count": 1e999}', "minimum_count"),
    ('{"type": "settings", "minimum_count": 1000000}', "minimum_count must be in"),
    ('{"type": "settings", "minimum_count": Infinity}', "must be JSON"),
    ('{"type": "settings", "detection_threshold": NaN}', "must be JSON"),
    ('{"type": "settings", "average_window_ms": -5}', "average_window_ms must be in"),
    ('{"type": "settings", "stride_ms": 5}', "unknown settings"),
    ("[" * 2000 + "]" * 2000, "flat JSON object"),
    ("[" * 15000 + "]" * 15000, "at most 4096"),
    ('{"type": "settings", "x": "' + "a" * 20000 + '"}', "at most 4096"),
]


@pytest.mark.parametrize("message, reason", BAD_SETTINGS)
def test_out_of_range_settings_close_the_stream_with_the_reason(start, expected_hops, message,
                                                                 reason):
    server = start()

    async def attack():
        async with session("127.0.0.2") as s:
            async with s.ws_connect(server.url + "/ws") as ws:
                await ws.receive_json(timeout=READY_S)
                await ws.send_str(message)
                error = await ws.receive_json(timeout=5)
                await ws.receive(timeout=5)
                return error, ws.close_code

    error, code = bounded(attack())
    assert code == 1003 and error["type"] == "error" and reason in error["message"], error
    still_serves(server, expected_hops)


def test_out_of_range_upload_settings_are_a_400_with_the_reason(start, expected_hops):
    server = start()
    body = wav_bytes(noise(1.2))
    cases = [("average_window_ms=1e308", "average_window_ms must be in"),
             ("minimum_count=inf", "minimum_count"), ("minimum_count=nan", "minimum_count"),
             ("minimum_count=1e6", "minimum_count must be in"),
             ("suppression_ms=-1", "suppression_ms must be in"),
             ("detection_threshold=x", "numbers"), ("stride_ms=30", "unknown settings")]

    async def attack():
        return [await post(server.url, body, query="?" + q) for q, _ in cases]

    for (status, reply), (query, reason) in zip(bounded(attack()), cases):
        assert status == 400 and reason in reply["error"], (query, status, reply)
    still_serves(server, expected_hops)


@pytest.mark.parametrize("flag, value", [("--average_window_ms", "1e308"),
                                         ("--suppression_ms", "1e12"),
                                         ("--minimum_count", "100000"), ("--stride_ms", "5")])
def test_out_of_range_setting_flags_are_one_line(flag, value):
    done = subprocess.run([sys.executable, str(REPO / "serve.py"), flag, value], cwd=REPO,
                          env=ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"{flag[2:]} must be in" in done.stderr.strip().splitlines()[-1]


# ---- exposure -----------------------------------------------------------------------------------

def test_binding_beyond_loopback_prints_a_warning():
    assert is_loopback("127.0.0.1") and is_loopback("::1")
    assert is_loopback("localhost") and not is_loopback("0.0.0.0")
    # 192.0.2.1 (TEST-NET-1) is no address of this machine: the bind fails, nothing is exposed
    done = subprocess.run([sys.executable, str(REPO / "serve.py"), "--host", "192.0.2.1",
                           "--port", "0"], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=60)
    lines = done.stderr.strip().splitlines()
    assert any(line.startswith("warning: --host 192.0.2.1 exposes") and "reverse proxy" in line
               for line in lines), done.stderr
    assert done.returncode == 2 and "cannot listen" in lines[-1]


# ---- the page -----------------------------------------------------------------------------------

def test_a_failed_upload_clears_the_previous_result_on_the_page(start, expected_hops,
                                                                 tmp_path):
    from test_serve import chrome, wait_for

    server = start()

    good, bad = tmp_path / "good.wav", tmp_path / "broken.wav"
    good.write_bytes(wav_bytes(noise(3.0)))
    bad.write_bytes(b"RIFF\x00\x00garbage" * 100)
    driver = chrome()
    try:
        driver.get(server.url + "/")
        wait_for(driver, "return document.getElementById('model').textContent.includes('yes')",
                 20)
        driver.find_element("id", "file").send_keys(str(good))
        wait_for(driver, "return window.recording", 30)
        assert driver.find_element("id", "timeline").is_displayed()
        driver.find_element("id", "file").send_keys(str(bad))
        status = wait_for(driver, "const s = document.getElementById('recording-status')"
                                  ".textContent; return s.includes('not labelled') && s", 30)
        assert status.startswith("broken.wav: not labelled:") and "the upload" in status
        assert driver.execute_script("return window.recording") is None
        assert not driver.find_element("id", "timeline").is_displayed()
        assert not driver.find_element("id", "csv").is_displayed()
        painted = driver.execute_script("""
            const c = document.getElementById('waveform');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n;""")
        assert painted == 0  # the old waveform is gone
        assert "broken.wav" in driver.execute_script("return window.lastError")
    finally:
        driver.quit()
    still_serves(server, expected_hops)


def test_the_server_config_has_a_flag_for_every_limit():
    import serve

    flags = {a.dest for a in serve.build_parser()._actions}
    limits = {f.name for f in dataclasses.fields(ServerConfig)} - {
        "model", "labels", "settings", "max_upload_bytes", "allow_origins", "allow_hosts"}
    assert limits <= flags, limits - flags
    assert {"max_upload_mb", "allow_origin", "allow_host"} <= flags
    assert set(LIMITS) <= limits | {"max_upload_bytes"}  # /api/info reports them
