"""A live keyword-spotting page: speak into the browser and see the word; drop a recording and see
its timeline.

    python serve.py --port 8000          # then open http://127.0.0.1:8000/

Serves kws/web/ (the page, its script and its audio worklet: nothing from the internet) and two
endpoints on the streaming recognizer of kws/streaming.py (the app is kws/serve/):
  /ws          WebSocket. The browser sends 16 kHz mono audio as binary frames of little-endian
               int16 samples (at most one second each) and text frames of JSON
               {"type": "settings", "detection_threshold": 0.8, ...}; the server answers each
               audio frame with {"type": "result", "audio_ms", "hops": [[time_ms, [scores]]],
               "detections": [{"label", "time_ms", "score"}]}. Anything else closes that
               connection (code 1003 or 1009, with a reason), as does --idle_seconds without
               audio (1008); other connections go on.
  /api/label   POST a recording (any format kws/audio.py reads, at most --max_upload_mb and
               --max_upload_seconds) as the request body: its detections, a CSV of them, and the
               waveform's envelope, as JSON.
  /api/info    the model, its labels, its streaming settings and the limits.
The model is --model (any .tflite/.pb/.keras the project freezes), by default the shipped one in
models/; each listener gets its own copy (the recognizer and the frame cache are per stream).
Binds to 127.0.0.1 unless --host says otherwise (behind a reverse proxy: README.md).
`/?listen=1` starts listening without a click.
"""

import argparse
import asyncio
import os
import sys
import time

from kws.common import UserError, run_cli
from kws.serve.config import ServerConfig
from kws.serve.hosts import is_loopback
from kws.shipped import DEFAULT_MODEL
from kws.streaming import add_settings_args, settings_from_flags


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=".tflite, .pb or .keras (default: the shipped model, models/)")
    parser.add_argument("--labels", default="", help="labels file (default: beside the model)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (anything but loopback exposes the page to the "
                             "network: put a TLS reverse proxy in front, README.md)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free one)")
    parser.add_argument("--threads", type=int, default=1, help="model threads per stream")
    g = parser.add_argument_group("limits (per client: per remote address)")
    g.add_argument("--max_upload_mb", type=float, default=50.0,
                   help="largest recording /api/label accepts, in bytes")
    g.add_argument("--max_upload_seconds", type=float, default=300.0,
                   help="longest recording /api/label accepts, in decoded audio")
    g.add_argument("--max_uploads", type=int, default=2,
                   help="recordings labelled at once; more get 503")
    g.add_argument("--max_uploads_per_client", type=int, default=1,
                   help="recordings one address may have labelled at once; more get 429")
    g.add_argument("--max_listeners", type=int, default=32,
                   help="concurrent microphone streams; more are refused")
    g.add_argument("--max_listeners_per_client", type=int, default=4,
                   help="concurrent microphone streams from one address")
    g.add_argument("--idle_seconds", type=float, default=20.0,
                   help="a stream that sends no audio this long is closed")
    g.add_argument("--header_timeout", type=float, default=10.0,
                   help="a connection must finish its request headers within this (and is "
                        "closed after this long idle between requests)")
    g.add_argument("--body_timeout", type=float, default=60.0,
                   help="an upload's body must arrive within this")
    g.add_argument("--allow_origin", action="append", default=[], metavar="ORIGIN",
                   help="another site whose pages may use /ws and /api/* (e.g. "
                        "https://example.org; repeat for more); default: same origin only")
    g.add_argument("--allow_host", action="append", default=[], metavar="NAME",
                   help="a host name the server answers to besides its address and localhost "
                        "(the public name behind a reverse proxy; repeat for more)")
    add_settings_args(parser)
    return parser


def config_from_args(args):
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be in [0, 65535], got {args.port}")
    positive = ["max_upload_mb", "max_upload_seconds", "max_uploads", "max_uploads_per_client",
                "max_listeners", "max_listeners_per_client", "idle_seconds", "header_timeout",
                "body_timeout", "threads"]
    bad = [f"--{name}" for name in positive if not getattr(args, name) > 0]
    if bad:
        raise UserError(f"{', '.join(bad)} must be positive")
    for origin in args.allow_origin:
        if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
            raise UserError(f"--allow_origin takes scheme://host[:port], got {origin!r}")
    if not os.path.isfile(args.model):
        raise UserError(f"model not found: {args.model}")
    return ServerConfig(model=args.model, labels=args.labels or None,
                        settings=settings_from_flags(args), threads=args.threads,
                        max_upload_bytes=int(args.max_upload_mb * 2**20),
                        max_upload_seconds=args.max_upload_seconds, max_uploads=args.max_uploads,
                        max_uploads_per_client=args.max_uploads_per_client,
                        max_listeners=args.max_listeners,
                        max_listeners_per_client=args.max_listeners_per_client,
                        idle_seconds=args.idle_seconds, header_timeout=args.header_timeout,
                        body_timeout=args.body_timeout, host=args.host,
                        allow_origins=tuple(args.allow_origin),
                        allow_hosts=tuple(args.allow_host))


def main(argv=None):
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    try:  # aiohttp: after the flags are checked, so that a missing one is a one-line error
        import aiohttp  # noqa: F401
    except ImportError:
        raise UserError("serve.py needs aiohttp: pip install -r requirements.txt") from None
    from kws.serve.server import serve_forever
    if not is_loopback(args.host):
        print(f"warning: --host {args.host} exposes the page, its microphone streams and its "
              "uploads to the network, unencrypted; serve it behind a TLS reverse proxy "
              "(README.md) and bind 127.0.0.1 where you can", file=sys.stderr, flush=True)
    started = time.monotonic()

    def ready(url):
        print(f"serving {os.path.basename(config.model)} at {url} "
              f"(started in {time.monotonic() - started:.1f} s; Ctrl-C stops)", flush=True)

    try:
        asyncio.run(serve_forever(config, args.host, args.port, ready))
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
