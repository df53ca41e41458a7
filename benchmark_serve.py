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
"""

import argparse
import asyncio
import os
import subprocess
import sys
import time

import numpy as np

from kws import SAMPLE_RATE
from kws.audio import stream_wav
from kws.common import UserError, machine_description, run_cli, write_metrics
from kws.shipped import DEFAULT_MODEL

FRAME = SAMPLE_RATE // 10  # samples a frame: the page's 100 ms


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
    parser.add_argument("--timeout", type=float, default=900.0, help="cap on the whole run (s)")
    parser.add_argument("--json", default="", help="write the figures here")
    return parser


def test_audio(seconds, wav=""):
    n = int(seconds * SAMPLE_RATE)
    if wav:
        blocks, have = [], 0
        for block in stream_wav(wav, SAMPLE_RATE):
            blocks.append(block)
            have += len(block)
            if have >= n:
                break
        if not have:
            raise UserError(f"{wav}: no audio")
        return np.resize(np.concatenate(blocks), n)
    rng = np.random.RandomState(0)
    audio = 0.01 * rng.randn(n).astype(np.float32)
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    for start in range(SAMPLE_RATE, n - len(t), 2 * SAMPLE_RATE):
        audio[start:start + len(t)] += 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return audio


def pcm_frames(audio):
    pcm = (np.clip(audio, -1, 32767 / 32768) * 32768).astype("<i2")
    return [pcm[i:i + FRAME].tobytes() for i in range(0, len(pcm) - FRAME + 1, FRAME)]


async def listener(session, url, frames, phase, connected, go):
    """Round trips (s) of every frame after the first second, hops received, and how far it fell
    behind real time (s: the latest a frame went out after its time). It connects, reports
    through `connected`, waits for `go`, then sends its first frame `phase` seconds later:
    listeners start at random phases of a frame, as real microphones do (--synchronized: all at
    the same instant)."""
    async with session.ws_connect(url, max_msg_size=0) as ws:
        ready = await ws.receive_json()
        if ready.get("type") != "ready":
            raise UserError(f"the server refused a listener: {ready}")
        connected()
        await go.wait()
        await asyncio.sleep(phase)
        t0 = time.monotonic()
        trips, hops, lag = [], 0, 0.0
        for k, frame in enumerate(frames):
            due = t0 + k * FRAME / SAMPLE_RATE
            await asyncio.sleep(max(due - time.monotonic(), 0))
            sent = time.monotonic()
            lag = max(lag, sent - due)
            await ws.send_bytes(frame)
            result = await ws.receive_json()
            if result.get("type") != "result":
                raise UserError(f"unexpected reply: {result}")
            if (k + 1) * FRAME > SAMPLE_RATE:
                trips.append(time.monotonic() - sent)
            hops += len(result["hops"])
        return trips, hops, lag


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_level(url, frames, n, pid, synchronized=False):
    """The figures of n listeners streaming at once, measured once all of them are connected."""
    import aiohttp

    phases = np.zeros(n) if synchronized else \
        np.random.RandomState(n).uniform(0, FRAME / SAMPLE_RATE, n)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        go, all_in, count = asyncio.Event(), asyncio.Event(), [0]

        def connected():
            count[0] += 1
            if count[0] == n:
                all_in.set()

        tasks = [asyncio.ensure_future(listener(session, url, frames, phase, connected, go))
                 for phase in phases]
        waiting = asyncio.ensure_future(all_in.wait())
        await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if not all_in.is_set():  # a listener failed before all were in
            waiting.cancel()
            await asyncio.gather(*tasks)
        cpu0, wall0, own0 = cpu_seconds(pid), time.monotonic(), time.process_time()
        go.set()
        results = await asyncio.gather(*tasks)
        cpu, wall = cpu_seconds(pid) - cpu0, time.monotonic() - wall0
        own = time.process_time() - own0
    trips = np.concatenate([np.asarray(r[0]) for r in results]) * 1000
    return {"listeners": n, "frames": int(trips.size),
            "round_trip_ms_median": float(np.median(trips)),
            "round_trip_ms_p99": float(np.percentile(trips, 99)),
            "round_trip_ms_max": float(trips.max()),
            "hops_per_second": sum(r[1] for r in results) / wall,
            "server_cpu_cores": cpu / wall, "client_cpu_cores": own / wall,
            "lag_ms_max": 1000 * max(r[2] for r in results)}


def start_server(model, max_listeners):
    proc = subprocess.Popen([sys.executable, "serve.py", "--model", model, "--port", "0",
                             "--max_listeners", str(max_listeners)],
                            cwd=os.path.dirname(os.path.abspath(__file__)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    line = proc.stdout.readline()
    if " at http" not in line:
        proc.kill()
        err = proc.stderr.read().strip().splitlines()
        raise UserError(f"serve.py did not start: {err[-1] if err else line.strip()}")
    return proc, line.split(" at ")[1].split()[0].replace("http://", "ws://") + "ws"


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.seconds < 2:
        raise UserError("--seconds must be >= 2 (the first second has no hop)")
    if not os.path.isfile(args.model):
        raise UserError(f"model not found: {args.model}")
    frames = pcm_frames(test_audio(args.seconds, args.wav))
    proc, url = start_server(args.model, max(args.listeners))
    levels = []
    try:
        async def run_all():
            for n in args.listeners:
                level = await asyncio.wait_for(
                    run_level(url, frames, n, proc.pid, args.synchronized), args.seconds + 30 + n)
                level["holds"] = (level["round_trip_ms_p99"] < args.limit_ms
                                  and level["lag_ms_max"] < args.limit_ms)
                levels.append(level)
                print(f"{n:4d} listeners: round trip median {level['round_trip_ms_median']:6.1f}"
                      f" ms, p99 {level['round_trip_ms_p99']:7.1f} ms, max "
                      f"{level['round_trip_ms_max']:7.1f} ms; {level['hops_per_second']:6.0f} "
                      f"hops/s; server {level['server_cpu_cores']:.2f} cores, clients "
                      f"{level['client_cpu_cores']:.2f}; lag {level['lag_ms_max']:.0f} ms"
                      + ("" if level["holds"] else f"  (over {args.limit_ms:g} ms)"), flush=True)

        asyncio.run(asyncio.wait_for(run_all(), args.timeout))
    except TimeoutError:
        raise UserError("the load test ran past its time limit") from None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    held = [lv["listeners"] for lv in levels if lv["holds"]]
    record = {"machine": machine_description(), "model": args.model, "seconds": args.seconds,
              "synchronized": args.synchronized,
              "frame_ms": FRAME * 1000 / SAMPLE_RATE, "limit_ms": args.limit_ms,
              "levels": levels, "most_listeners_held": max(held) if held else 0}
    print(f"{machine_description()}: holds {record['most_listeners_held']} listeners with p99 "
          f"under {args.limit_ms:g} ms")
    write_metrics(args.json, record)
    return 0


if __name__ == "__main__":
    run_cli(main)
