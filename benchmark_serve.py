"""Load test of serve.py on loopback: N listeners stream real-time audio at once; how long each
audio frame waits for its scores.

    python benchmark_serve.py --listeners 1,8,16,32,48 --seconds 20 --json logs/serve_load.json

Starts `serve.py --port 0` as its own process, then for each N opens N WebSocket listeners from
this process, each sending 100 ms int16 frames at the pace of real time (as the page does) for
--seconds, and times every frame from its send to its result message (queueing, the model's
hops, the JSON, the loopback). The first second of each stream is left out (no hop runs before a
full second has arrived). Reports per N the frame round trip (median, p99, max), hops a second,
the CPU use of the server and of the clients, and how far the slowest listener fell behind real
time (lag); a load "holds" when both p99 and the lag stay under --limit_ms. Bounded: every level
stops after --seconds (+ a grace), the whole run after --timeout.

Under attack (`--attack both`: each level without, then with; `--attack only`): while the
listeners stream, --attack_uploads clients post recordings of the longest allowed duration
(--max_upload_seconds) over and over, --attack_idle WebSocket connections open and never send
audio (reconnecting when the server closes them), and --attack_slow connections send half a
request's headers (slow loris), reconnecting too. Every client, listener or attacker, comes from
its own loopback address (127.0.x.y) as distinct users would, so that the server's per-client
caps apply as in the wild. The server's RSS is sampled every --rss_every seconds over the whole
run (`--attack only --listeners 64 --seconds 600`: a ten-minute soak).
"""

import argparse
import os

from kws.common import UserError, run_cli, write_metrics
from kws.serve_bench import load_test
from kws.shipped import DEFAULT_MODEL


def comma_ints(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers like 1,8,16, got {text!r}") \
            from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("listener counts must be >= 1")
    return values


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the model serve.py runs")
    parser.add_argument("--listeners", type=comma_ints, default=[1, 8, 16, 32],
                        help="comma-separated numbers of concurrent listeners, one level each")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio each listener sends")
    parser.add_argument("--wav", default="", help="audio to stream (default: generated noise "
                                                  "with tone bursts; the model's work is the same)")
    parser.add_argument("--limit_ms", type=float, default=100.0,
                        help="a load holds while the p99 round trip stays under this")
    parser.add_argument("--synchronized", action="store_true",
                        help="every listener sends its frame at the same instant (the worst "
                             "case) instead of at a random phase of the frame")
    parser.add_argument("--attack", choices=["off", "both", "only"], default="off",
                        help="run each level under attack too (both) or only under attack")
    parser.add_argument("--attack_uploads", type=int, default=4,
                        help="clients posting recordings of the longest allowed duration")
    parser.add_argument("--attack_idle", type=int, default=32,
                        help="WebSocket connections that never send audio")
    parser.add_argument("--attack_slow", type=int, default=64,
                        help="connections that never finish their request headers")
    parser.add_argument("--max_upload_seconds", type=float, default=300.0,
                        help="the server's limit, and the length of the attackers' uploads")
    parser.add_argument("--rss_every", type=float, default=10.0,
                        help="sample the server's resident memory this often (s)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="cap on the whole run (s)")
    parser.add_argument("--json", default="", help="write the figures here")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.seconds < 2:
        raise UserError("--seconds must be >= 2 (the first second has no hop)")
    if min(args.attack_uploads, args.attack_idle, args.attack_slow) < 0 or \
            args.max_upload_seconds <= 0 or args.rss_every <= 0:
        raise UserError("attack counts must be >= 0, --max_upload_seconds and --rss_every > 0")
    if not os.path.isfile(args.model):
        raise UserError(f"model not found: {args.model}")
    write_metrics(args.json, load_test(args, os.path.dirname(os.path.abspath(__file__))))
    return 0


if __name__ == "__main__":
    run_cli(main)
