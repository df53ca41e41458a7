"""A live keyword-spotting page: speak into the browser and see the word; drop a recording and see
its timeline.

    python serve.py --port 8000          # then open http://127.0.0.1:8000/

Serves kws/web/ (the page, its script and its audio worklet: nothing from the internet) and two
endpoints on the streaming recognizer of kws/streaming.py:
  /ws          WebSocket. The browser sends 16 kHz mono audio as binary frames of little-endian
               int16 samples (at most MAX_FRAME_SAMPLES each) and text frames of JSON
               {"type": "settings", "detection_threshold": 0.8, ...}; the server answers each
               audio frame with {"type": "result", "audio_ms", "hops": [[time_ms, [scores]]],
               "detections": [{"label", "time_ms", "score"}]}. Anything else closes that
               connection (code 1003 or 1009, with a reason); other connections go on.
  /api/label   POST a recording (any length and format kws/audio.py reads, at most
               --max_upload_mb) as the request body: its detections, a CSV of them, and the
               waveform's envelope, as JSON.
  /api/info    the model, its labels and its streaming settings.
The model is --model (any .tflite/.pb/.keras the project freezes), by default the shipped one in
models/; each listener gets its own copy (the recognizer and the frame cache are per stream).
Binds to 127.0.0.1 unless --host says otherwise. `/?listen=1` starts listening without a click.
"""

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from kws import SAMPLE_RATE
from kws.audio import AudioError, stream_wav
from kws.common import UserError, run_cli
from kws.runtime import load_streaming_model
from kws.shipped import DEFAULT_MODEL
from kws.streaming import Spotter, add_settings_args, detections_csv, settings_from_flags

WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kws", "web")
MAX_FRAME_SAMPLES = SAMPLE_RATE  # one second of audio per WebSocket frame at most
PAGE_SETTINGS = ("detection_threshold", "average_window_ms", "suppression_ms", "minimum_count")
ENVELOPE_COLUMNS = 2000
UPLOAD_BLOCK = SAMPLE_RATE  # samples per block when labelling a recording


class ProtocolError(Exception):
    """A client message the server does not accept; closes that connection only."""


@dataclasses.dataclass
class ServerConfig:
    model: str
    labels: str | None
    settings: object   # kws.streaming.StreamSettings: the defaults of every new stream
    threads: int = 1
    max_upload_bytes: int = 50 * 2**20
    max_listeners: int = 32


class App:
    """The server's state: a model factory, a worker pool for the model's work, the listeners."""

    def __init__(self, config):
        self.config = config
        model, self.labels = self.load_model()  # fail at start, not at the first listener
        del model
        self.pool = ThreadPoolExecutor(max_workers=max(os.cpu_count() or 1, 1))
        self.listeners = 0

    def load_model(self):
        c = self.config
        return load_streaming_model(c.model, c.labels, c.threads, c.settings.stride_ms)

    def new_spotter(self):
        model, labels = self.load_model()
        return Spotter(model, labels, dataclasses.replace(self.config.settings))

    def info(self):
        return {"model": os.path.basename(self.config.model), "labels": self.labels,
                "settings": dataclasses.asdict(self.config.settings),
                "page_settings": list(PAGE_SETTINGS),
                "max_upload_bytes": self.config.max_upload_bytes,
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


def settings_changes(text):
    """The recognizer settings a text frame asks for, checked, or ProtocolError."""
    try:
        message = json.loads(text)
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


def label_recording(spotter, path, columns=ENVELOPE_COLUMNS):
    """Detections, their CSV and the waveform envelope (min/max per column) of a file, read
    block by block (never whole)."""
    import soundfile as sf

    try:
        seconds = sf.info(path).duration
    except Exception:
        seconds = 0.0
    expected = max(int(seconds * SAMPLE_RATE), 1)
    per_column = max(expected // columns, 1)
    lows, highs, found = [], [], []
    pending = np.zeros(0, np.float32)
    for block in stream_wav(path, UPLOAD_BLOCK):
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


# ---- aiohttp -------------------------------------------------------------------------------------

def make_app(app):
    from aiohttp import WSCloseCode, WSMsgType, web

    async def index(request):
        return web.FileResponse(os.path.join(WEB_DIR, "index.html"))

    async def info(request):
        return web.json_response(app.info())

    async def listen(request):
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_SAMPLES * 2 + 1024, heartbeat=30)
        await ws.prepare(request)
        if app.listeners >= app.config.max_listeners:
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"server full")
            return ws
        app.listeners += 1
        loop = asyncio.get_running_loop()
        try:
            spotter = await loop.run_in_executor(app.pool, app.new_spotter)
            await ws.send_json({"type": "ready", **app.info()})
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    samples = decode_audio_frame(msg.data)
                    result = await loop.run_in_executor(app.pool, feed_frame, spotter, samples)
                    await ws.send_json(result)
                elif msg.type == WSMsgType.TEXT:
                    settings = spotter.update_settings(**settings_changes(msg.data))
                    await ws.send_json({"type": "settings",
                                        "settings": dataclasses.asdict(settings)})
                elif msg.type == WSMsgType.ERROR:
                    break
        except (ProtocolError, UserError) as e:
            await close_with_error(ws, WSCloseCode.UNSUPPORTED_DATA, str(e))
        except Exception as e:  # one bad stream must not take the server down
            await close_with_error(ws, WSCloseCode.INTERNAL_ERROR, f"server error: {e}")
        finally:
            app.listeners -= 1
        if ws.close_code == WSCloseCode.MESSAGE_TOO_BIG:
            print("a listener sent a frame over the size limit", file=sys.stderr)
        return ws

    async def close_with_error(ws, code, message):
        if not ws.closed:
            try:
                await ws.send_json({"type": "error", "message": message})
            except ConnectionError:
                pass
            await ws.close(code=code, message=message[:120].encode())

    async def label(request):
        limit = app.config.max_upload_bytes
        if request.content_length is not None and request.content_length > limit:
            return upload_too_large(web, limit)
        fd, path = tempfile.mkstemp(prefix="kws_upload_", suffix=".audio")
        try:
            size = 0
            with os.fdopen(fd, "wb") as f:
                async for chunk in request.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > limit:
                        return upload_too_large(web, limit)
                    f.write(chunk)
            if size == 0:
                return web.json_response({"error": "empty upload"}, status=400)
            try:
                changes = {k: float(v) for k, v in request.query.items() if k in PAGE_SETTINGS}
            except ValueError:
                return web.json_response({"error": "settings must be numbers"}, status=400)
            loop = asyncio.get_running_loop()

            def work():
                spotter = app.new_spotter()
                spotter.update_settings(**changes)
                return label_recording(spotter, path)

            try:
                result = await loop.run_in_executor(app.pool, work)
            except (AudioError, UserError) as e:
                return web.json_response({"error": str(e).replace(path, "the upload")},
                                         status=400)
            except ValueError as e:
                return web.json_response({"error": f"bad settings: {e}"}, status=400)
            return web.json_response(result)
        finally:
            if os.path.exists(path):
                os.unlink(path)

    async def on_shutdown(_):
        app.pool.shutdown(wait=False, cancel_futures=True)

    web_app = web.Application(client_max_size=app.config.max_upload_bytes + 1)
    web_app.router.add_get("/", index)
    web_app.router.add_get("/api/info", info)
    web_app.router.add_post("/api/label", label)
    web_app.router.add_get("/ws", listen)
    web_app.router.add_static("/static/", WEB_DIR, follow_symlinks=False)
    web_app.on_shutdown.append(on_shutdown)
    return web_app


def upload_too_large(web, limit):
    return web.json_response({"error": f"upload over the {limit / 2**20:g} MB limit "
                                       "(serve.py --max_upload_mb)"}, status=413)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=".tflite, .pb or .keras (default: the shipped model, models/)")
    parser.add_argument("--labels", default="", help="labels file (default: beside the model)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (0.0.0.0 exposes the page to the network)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free one)")
    parser.add_argument("--max_upload_mb", type=float, default=50.0,
                        help="largest recording /api/label accepts")
    parser.add_argument("--max_listeners", type=int, default=32,
                        help="concurrent microphone streams; more are refused")
    parser.add_argument("--threads", type=int, default=1, help="model threads per stream")
    add_settings_args(parser)
    return parser


def config_from_args(args):
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be in [0, 65535], got {args.port}")
    if args.max_upload_mb <= 0 or args.max_listeners < 1 or args.threads < 1:
        raise UserError("--max_upload_mb, --max_listeners and --threads must be positive")
    if not os.path.isfile(args.model):
        raise UserError(f"model not found: {args.model}")
    return ServerConfig(model=args.model, labels=args.labels or None,
                        settings=settings_from_flags(args), threads=args.threads,
                        max_upload_bytes=int(args.max_upload_mb * 2**20),
                        max_listeners=args.max_listeners)


async def serve(config, host, port, ready=None):
    """Run the server until cancelled; ready(url) is called once it listens."""
    from aiohttp import web

    runner = web.AppRunner(make_app(App(config)))
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    bound = site._server.sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}/"
    if ready:
        ready(url)
    try:
        while True:
            await asyncio.sleep(3600)
    finally:
        await runner.cleanup()


def main(argv=None):
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise UserError("serve.py needs aiohttp: pip install -r requirements.txt") from None
    started = time.monotonic()

    def ready(url):
        print(f"serving {os.path.basename(config.model)} at {url} "
              f"(started in {time.monotonic() - started:.1f} s; Ctrl-C stops)", flush=True)

    try:
        asyncio.run(serve(config, args.host, args.port, ready))
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
