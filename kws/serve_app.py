"""The live page's server (serve.py is its command line): the stream protocol, the upload
endpoint, and the limits that keep one client from taking the server from the others.

    server = await start_server(ServerConfig(model=..., labels=None, settings=...), host, port)
    ...                                   # server.url, server.app; then await server.close()

Work is bounded per client and in all: a listener closes after `idle_seconds` without audio,
an address may hold `max_listeners_per_client` streams and `max_uploads_per_client` uploads,
an upload may hold `max_upload_seconds` of audio (from its header, then counted while it
decodes), and a connection must finish its request headers within `header_timeout` and its
upload body within `body_timeout`. Uploads run in their own threads and step aside whenever a
listener's frame is waiting (ListenersFirst), so they delay a live result by one slice of
their work (milliseconds), and a client that disconnects stops its upload's work.
Requests to /ws and /api/* from another site (Origin) or under another host name (Host: DNS
rebinding) are refused; every response carries a content security policy.
"""

import asyncio
import collections
import dataclasses
import ipaddress
import json
import os
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from kws import SAMPLE_RATE
from kws.audio import AudioError, AudioTooLong, stream_wav
from kws.common import UserError
from kws.runtime import load_streaming_model
from kws.streaming import Spotter, detections_csv

WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
MAX_FRAME_SAMPLES = SAMPLE_RATE  # one second of audio per WebSocket frame at most
MAX_TEXT_BYTES = 4096            # a settings message is ~150 bytes
MAX_JSON_DEPTH = 2               # a settings message is one flat object
PAGE_SETTINGS = ("detection_threshold", "average_window_ms", "suppression_ms", "minimum_count")
ENVELOPE_COLUMNS = 2000
UPLOAD_SLICE = SAMPLE_RATE // 4  # samples an upload works on before it lets listeners go first
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
LIMITS = ("max_upload_seconds", "max_upload_bytes", "max_uploads", "max_uploads_per_client",
          "max_listeners", "max_listeners_per_client", "idle_seconds", "header_timeout",
          "body_timeout")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data: blob:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class ProtocolError(Exception):
    """A client message the server does not accept; closes that connection only."""


class UploadCancelled(Exception):
    """The client of an upload went away; its work stopped."""


@dataclasses.dataclass
class ServerConfig:
    model: str
    labels: str | None
    settings: object   # kws.streaming.StreamSettings: the defaults of every new stream
    threads: int = 1
    max_upload_bytes: int = 50 * 2**20
    max_upload_seconds: float = 300.0
    max_uploads: int = 2
    max_uploads_per_client: int = 1
    max_listeners: int = 32
    max_listeners_per_client: int = 4
    idle_seconds: float = 20.0
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    host: str = "127.0.0.1"   # the address bound: its name is an allowed Host
    allow_origins: tuple = ()
    allow_hosts: tuple = ()


class ListenersFirst:
    """A priority between two thread pools: upload work waits while any listener job is queued
    or running. Listener jobs are counted from the moment they are submitted."""

    def __init__(self):
        self.active = 0
        self.changed = threading.Condition()

    def listener_started(self):
        with self.changed:
            self.active += 1

    def listener_done(self):
        with self.changed:
            self.active -= 1
            if not self.active:
                self.changed.notify_all()

    def wait_for_listeners(self, cancelled):
        """Block until no listener job is waiting; False if `cancelled` was set meanwhile."""
        with self.changed:
            while self.active and not cancelled.is_set():
                self.changed.wait(0.1)
        return not cancelled.is_set()


class ConnectionGuard:
    """Closes connections that hold no request in progress for `timeout` seconds: a request
    whose headers never finish (slow loris), or an idle keep-alive connection. The app's
    middleware calls busy()/idle() around every request."""

    def __init__(self, timeout):
        self.timeout = timeout
        self.state = {}   # protocol -> [requests in progress, timer]

    def protocol_factory(self, make_protocol):
        def factory():
            protocol = make_protocol()
            self.state[protocol] = [0, None]
            self._arm(protocol)
            return protocol
        return factory

    def _arm(self, protocol):
        entry = self.state[protocol]
        loop = asyncio.get_running_loop()
        entry[1] = loop.call_later(self.timeout, self._expire, protocol)

    def _expire(self, protocol):
        entry = self.state.get(protocol)
        if entry is None or entry[0]:
            return
        del self.state[protocol]
        transport = protocol.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def busy(self, protocol):
        entry = self.state.get(protocol)
        if entry is not None:
            entry[0] += 1
            if entry[1] is not None:
                entry[1].cancel()
                entry[1] = None

    def idle(self, protocol):
        entry = self.state.get(protocol)
        if entry is None:
            return
        entry[0] -= 1
        if not entry[0]:
            transport = protocol.transport
            if transport is None or transport.is_closing():
                del self.state[protocol]
            else:
                self._arm(protocol)


class App:
    """The server's state: a model factory, one thread pool for listeners and one for uploads,
    and who holds what."""

    def __init__(self, config):
        self.config = config
        model, self.labels = self.load_model()  # fail at start, not at the first listener
        del model
        self.pool = ThreadPoolExecutor(max_workers=max(os.cpu_count() or 1, 1),
                                       thread_name_prefix="kws-listen")
        self.upload_pool = ThreadPoolExecutor(max_workers=config.max_uploads,
                                              thread_name_prefix="kws-upload")
        self.priority = ListenersFirst()
        self.guard = ConnectionGuard(config.header_timeout)
        self.listeners = collections.Counter()  # client address -> open streams
        self.uploads = collections.Counter()    # client address -> uploads in progress
        self.upload_jobs = 0                    # upload work running in upload_pool now
        self.upload_jobs_lock = threading.Lock()

    def load_model(self):
        c = self.config
        return load_streaming_model(c.model, c.labels, c.threads, c.settings.stride_ms)

    def new_spotter(self, changes=None):
        model, labels = self.load_model()
        return Spotter(model, labels, dataclasses.replace(self.config.settings, **(changes or {})))

    async def run_listener_job(self, fn, *args):
        """fn(*args) in the listeners' pool, counted so that uploads wait for it."""
        def job():
            try:
                return fn(*args)
            finally:
                self.priority.listener_done()

        self.priority.listener_started()
        try:
            future = asyncio.get_running_loop().run_in_executor(self.pool, job)
        except BaseException:
            self.priority.listener_done()
            raise
        return await future

    def info(self):
        c = self.config
        return {"model": os.path.basename(c.model), "labels": self.labels,
                "settings": dataclasses.asdict(c.settings),
                "page_settings": list(PAGE_SETTINGS),
                "max_upload_bytes": c.max_upload_bytes,
                "limits": {name: getattr(c, name) for name in LIMITS},
                "sample_rate": SAMPLE_RATE, "max_frame_samples": MAX_FRAME_SAMPLES}


# ---- the stream protocol, independent of the web framework --------------------------------------

def decode_audio_frame(data):
    """float32 samples of one binary frame of int16 little-endian PCM, or ProtocolError."""
    if len(data) == 0 or len(data) % 2:
        raise ProtocolError(f"audio frames must hold whole int16 samples, got {len(data)} bytes")
    if len(data) // 2 > MAX_FRAME_SAMPLES:
        raise ProtocolError(f"audio frame of {len(data) // 2} samples; at most "
                            f"{MAX_FRAME_SAMPLES} (one second) a frame")
    return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0


def json_depth(text):
    """How deep brackets nest in text (strings included: an over-estimate is safe), found
    without parsing it, so that deep nesting is refused before json.loads recurses."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def refuse_constant(name):
    raise ValueError(f"{name} is not a number JSON allows")


def settings_changes(text):
    """The recognizer settings a text frame asks for, checked, or ProtocolError. Their ranges
    are StreamSettings' (Spotter.update_settings raises UserError)."""
    if len(text) > MAX_TEXT_BYTES:
        raise ProtocolError(f"text frame of {len(text)} characters; a settings message is at "
                            f"most {MAX_TEXT_BYTES}")
    if json_depth(text) > MAX_JSON_DEPTH:
        raise ProtocolError("text frames must be one flat JSON object")
    try:
        message = json.loads(text, parse_constant=refuse_constant)
    except ValueError:
        raise ProtocolError("text frames must be JSON") from None
    if not isinstance(message, dict) or message.get("type") != "settings":
        raise ProtocolError('text frames must be {"type": "settings", ...}')
    changes = {k: v for k, v in message.items() if k != "type"}
    unknown = sorted(set(changes) - set(PAGE_SETTINGS))
    if unknown:
        raise ProtocolError(f"unknown settings {unknown}; the page may change {PAGE_SETTINGS}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in changes.values()):
        raise ProtocolError("settings must be numbers")
    return changes


def query_settings(query, defaults):
    """The settings of an upload's query string, checked against StreamSettings' ranges."""
    unknown = sorted(set(query) - set(PAGE_SETTINGS))
    if unknown:
        raise UserError(f"unknown settings {unknown}; an upload may set {PAGE_SETTINGS}")
    try:
        changes = {k: float(v) for k, v in query.items()}
    except ValueError:
        raise UserError("settings must be numbers") from None
    dataclasses.replace(defaults, **changes)  # raises UserError naming the bad value
    return changes


def feed_frame(spotter, samples):
    """The result message of one audio frame: every hop's smoothed scores and the detections."""
    hops = []

    def on_scores(time_ms, probs, smoothed):
        scores = probs if smoothed is None else smoothed
        hops.append([round(time_ms), [round(float(p), 3) for p in scores]])

    found = spotter.feed(samples, on_scores)
    return {"type": "result", "audio_ms": round(spotter.heard_ms), "hops": hops,
            "detections": [detection_dict(d) for d in found]}


def detection_dict(d):
    return {"label": d.label, "time_ms": round(d.time_ms), "score": round(float(d.score), 4)}


def label_recording(spotter, path, max_seconds=None, may_go_on=None, columns=ENVELOPE_COLUMNS):
    """Detections, their CSV and the waveform envelope (min/max per column) of a file, read
    block by block (never whole), at most max_seconds of it (AudioTooLong). may_go_on() is
    asked before every block: it may wait (for listeners), and False stops the work
    (UploadCancelled)."""
    import soundfile as sf

    try:
        seconds = sf.info(path).duration
    except Exception:
        seconds = 0.0
    if not 0 < seconds <= (max_seconds or np.inf):  # unknown length: size for the limit
        seconds = max_seconds or 0.0
    expected = max(int(seconds * SAMPLE_RATE), 1)
    per_column = max(expected // columns, 1)
    lows, highs, found = [], [], []
    pending = np.zeros(0, np.float32)
    for block in stream_wav(path, UPLOAD_SLICE, max_seconds):
        if may_go_on and not may_go_on():
            raise UploadCancelled()
        found += spotter.feed(block)
        pending = np.concatenate([pending, block])
        usable = len(pending) // per_column * per_column
        if usable:
            cols = pending[:usable].reshape(-1, per_column)
            lows += cols.min(axis=1).tolist()
            highs += cols.max(axis=1).tolist()
            pending = pending[usable:]
    if len(pending):
        lows.append(float(pending.min()))
        highs.append(float(pending.max()))
    return {"duration_ms": round(spotter.heard_ms), "sample_rate": SAMPLE_RATE,
            "detections": [detection_dict(d) for d in found], "csv": detections_csv(found),
            "envelope": {"column_ms": per_column * 1000 / SAMPLE_RATE,
                         "min": [round(v, 4) for v in lows], "max": [round(v, 4) for v in highs]},
            "settings": dataclasses.asdict(spotter.settings)}


# ---- who may ask --------------------------------------------------------------------------------

def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(netloc):
    """The host of a Host header or an origin's host[:port], lower case, without brackets."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1:netloc.find("]")] if "]" in netloc else netloc[1:]
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def is_ip_literal(name):
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def host_refusal(config, host_header):
    """Why a Host header is refused, or None. Allowed: the loopback names, the bound address,
    --allow_host names and, when bound to every interface, any IP address; a DNS name that
    points here without being listed is DNS rebinding. No Host at all (HTTP/1.0) is no browser."""
    if host_header is None:
        return None
    name = host_name(host_header)
    bound = config.host.strip("[]").lower()
    allowed = {*LOOPBACK_NAMES, *(h.lower() for h in config.allow_hosts)}
    if bound not in ("", "0.0.0.0", "::"):
        allowed.add(bound)
    elif is_ip_literal(name):
        return None
    if name in allowed:
        return None
    return f"host {name!r} is not served here (serve.py --allow_host adds a name)"


def origin_refusal(config, origin, host_header):
    """Why an Origin header is refused, or None: same origin (the Host the browser asked for)
    or an --allow_origin. No Origin at all is a client that is not a browser page."""
    if origin is None:
        return None
    origin = origin.strip().lower().rstrip("/")
    if origin in (o.lower().rstrip("/") for o in config.allow_origins):
        return None
    scheme, _, netloc = origin.partition("://")
    if scheme in ("http", "https") and netloc and netloc == (host_header or "").lower():
        return None
    return (f"requests from the page of another site ({origin}) are refused "
            "(serve.py --allow_origin adds one)")


# ---- aiohttp -------------------------------------------------------------------------------------

def make_app(app):
    from aiohttp import WSCloseCode, WSMsgType, web

    config = app.config

    @web.middleware
    async def checks(request, handler):
        app.guard.busy(request.protocol)
        try:
            refusal = host_refusal(config, request.headers.get("Host"))
            if refusal is None and (request.path == "/ws" or request.path.startswith("/api/")):
                refusal = origin_refusal(config, request.headers.get("Origin"),
                                         request.headers.get("Host"))
            if refusal:
                return web.json_response({"error": refusal}, status=403)
            return await handler(request)
        finally:
            app.guard.idle(request.protocol)

    async def add_security_headers(request, response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)

    async def index(request):
        return web.FileResponse(os.path.join(WEB_DIR, "index.html"))

    async def info(request):
        return web.json_response(app.info())

    async def listen(request):
        # No heartbeat: the idle timeout already closes a stream whose client vanished, and
        # aiohttp 3.14 re-arms a closed socket's heartbeat when the client's close frame arrives
        # after the server's, which keeps every such socket (idle ones, refused ones) in memory.
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_SAMPLES * 2 + 1024)
        try:
            await ws.prepare(request)
        except ConnectionError:  # the client left during the handshake
            return web.Response(status=400)
        client = request.remote
        if sum(app.listeners.values()) >= config.max_listeners:
            await close_with_error(ws, WSCloseCode.TRY_AGAIN_LATER, "server full")
            return ws
        if app.listeners[client] >= config.max_listeners_per_client:
            await close_with_error(ws, WSCloseCode.TRY_AGAIN_LATER,
                                   f"too many listeners from your address (at most "
                                   f"{config.max_listeners_per_client})")
            return ws
        app.listeners[client] += 1
        try:
            spotter = await app.run_listener_job(app.new_spotter)
            await ws.send_json({"type": "ready", **app.info()})
            await stream_to(ws, spotter)
        except (ProtocolError, UserError) as e:
            await close_with_error(ws, WSCloseCode.UNSUPPORTED_DATA, str(e))
        except Exception as e:  # one bad stream must not take the server down
            await close_with_error(ws, WSCloseCode.INTERNAL_ERROR, f"server error: {e}")
        finally:
            app.listeners[client] -= 1
            if not app.listeners[client]:
                del app.listeners[client]
        if ws.close_code == WSCloseCode.MESSAGE_TOO_BIG:
            print("a listener sent a frame over the size limit", file=sys.stderr)
        return ws

    async def stream_to(ws, spotter):
        """Answer the frames of one listener until it leaves or sends no audio for too long."""
        loop = asyncio.get_running_loop()
        last_audio = loop.time()
        while True:
            wait = last_audio + config.idle_seconds - loop.time()
            try:
                msg = await ws.receive(timeout=max(wait, 0.001))  # 0 means none
            except TimeoutError:
                await close_with_error(ws, WSCloseCode.POLICY_VIOLATION,
                                       f"idle: no audio for {config.idle_seconds:g} s")
                return
            if msg.type == WSMsgType.BINARY:
                last_audio = loop.time()
                # counted from receipt to reply: the event loop's part (JSON, framing) needs
                # the CPU and the interpreter as much as the model's part in the pool does
                app.priority.listener_started()
                try:
                    samples = decode_audio_frame(msg.data)
                    await ws.send_json(await app.run_listener_job(feed_frame, spotter, samples))
                finally:
                    app.priority.listener_done()
            elif msg.type == WSMsgType.TEXT:
                settings = spotter.update_settings(**settings_changes(msg.data))
                await ws.send_json({"type": "settings",
                                    "settings": dataclasses.asdict(settings)})
            else:  # CLOSE, CLOSING, CLOSED, ERROR
                return

    async def close_with_error(ws, code, message):
        if not ws.closed:
            try:
                await ws.send_json({"type": "error", "message": message})
            except ConnectionError:
                pass
            await ws.close(code=code, message=message[:120].encode())

    def refuse(status, message):
        return web.json_response({"error": message}, status=status)

    async def label(request):
        try:
            changes = query_settings(request.query, config.settings)
        except UserError as e:
            return refuse(400, f"bad settings: {e}")
        client = request.remote
        if sum(app.uploads.values()) >= config.max_uploads:
            return refuse(503, f"busy: {config.max_uploads} recordings are being labelled; "
                               "try again shortly")
        if app.uploads[client] >= config.max_uploads_per_client:
            return refuse(429, f"your address has {app.uploads[client]} recording(s) being "
                               f"labelled already (at most {config.max_uploads_per_client})")
        app.uploads[client] += 1
        try:
            return await receive_and_label(request, changes)
        finally:
            app.uploads[client] -= 1
            if not app.uploads[client]:
                del app.uploads[client]

    async def receive_and_label(request, changes):
        limit = config.max_upload_bytes
        if request.content_length is not None and request.content_length > limit:
            return upload_too_large(web, limit)
        fd, path = tempfile.mkstemp(prefix="kws_upload_", suffix=".audio")
        try:
            size = 0
            with os.fdopen(fd, "wb") as f:
                try:
                    async with asyncio.timeout(config.body_timeout):
                        async for chunk in request.content.iter_chunked(1 << 16):
                            size += len(chunk)
                            if size > limit:
                                return upload_too_large(web, limit)
                            f.write(chunk)
                except TimeoutError:
                    response = refuse(408, f"the upload did not arrive within "
                                           f"{config.body_timeout:g} s (serve.py --body_timeout)")
                    response.force_close()
                    return response
                except ConnectionError:
                    return refuse(400, "the client went away")
            if size == 0:
                return refuse(400, "empty upload")
            try:
                result = await label_in_upload_pool(request, path, changes)
            except UploadCancelled:
                return refuse(400, "cancelled: the client went away")
            except AudioTooLong as e:
                return refuse(413, str(e).replace(path, "the upload")
                              + " (serve.py --max_upload_seconds)")
            except (AudioError, UserError) as e:
                return refuse(400, str(e).replace(path, "the upload"))
            return web.json_response(result)
        finally:
            if os.path.exists(path):
                os.unlink(path)

    async def label_in_upload_pool(request, path, changes):
        """Label the file in the uploads' pool; stop its work when the client disconnects."""
        cancelled = threading.Event()

        def may_go_on():
            return app.priority.wait_for_listeners(cancelled)

        def work():
            with app.upload_jobs_lock:
                app.upload_jobs += 1
            try:
                spotter = app.new_spotter(changes)
                return label_recording(spotter, path, config.max_upload_seconds, may_go_on)
            finally:
                with app.upload_jobs_lock:
                    app.upload_jobs -= 1

        future = asyncio.get_running_loop().run_in_executor(app.upload_pool, work)
        try:
            while True:
                done, _ = await asyncio.wait([future], timeout=0.2)
                if done:
                    return future.result()
                transport = request.transport
                if transport is None or transport.is_closing():
                    cancelled.set()
        finally:
            cancelled.set()  # a cancelled handler (shutdown) stops the work too

    async def on_shutdown(_):
        app.pool.shutdown(wait=False, cancel_futures=True)
        app.upload_pool.shutdown(wait=False, cancel_futures=True)

    web_app = web.Application(client_max_size=config.max_upload_bytes + 1,
                              middlewares=[checks])
    web_app.router.add_get("/", index)
    web_app.router.add_get("/api/info", info)
    web_app.router.add_post("/api/label", label)
    web_app.router.add_get("/ws", listen)
    web_app.router.add_static("/static/", WEB_DIR, follow_symlinks=False)
    web_app.on_response_prepare.append(add_security_headers)
    web_app.on_shutdown.append(on_shutdown)
    return web_app


def upload_too_large(web, limit):
    return web.json_response({"error": f"upload over the {limit / 2**20:g} MB limit "
                                       "(serve.py --max_upload_mb)"}, status=413)


@dataclasses.dataclass
class RunningServer:
    url: str
    app: App
    runner: object
    server: asyncio.AbstractServer

    async def close(self):
        self.server.close()
        await self.runner.cleanup()


async def start_server(config, host, port):
    """Serve the app on host:port (0: any free port) with the connection guard; UserError if
    the address cannot be bound."""
    from aiohttp import web

    app = App(config)
    runner = web.AppRunner(make_app(app), handle_signals=False)
    await runner.setup()
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(app.guard.protocol_factory(runner.server), host, port,
                                          reuse_address=True)
    except OSError as e:
        await runner.cleanup()
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    bound = server.sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return RunningServer(f"http://{shown}:{bound}/", app, runner, server)
