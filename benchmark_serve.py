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
import asyncio
import collections
import io
import os
import subprocess
import sys
import tempfile
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


def loopback_address(group, i):
    """A distinct loopback address for client i of a group (127/8 is all loopback on Linux)."""
    return f"127.{group}.{i // 250}.{i % 250 + 1}"


def client_session(address):
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0,
                                                                local_addr=(address, 0)))


async def run_level(url, frames, n, pid, synchronized=False):
    """The figures of n listeners streaming at once, measured once all of them are connected."""
    phases = np.zeros(n) if synchronized else \
        np.random.RandomState(n).uniform(0, FRAME / SAMPLE_RATE, n)
    sessions = [client_session(loopback_address(1, i)) for i in range(n)]
    try:
        go, all_in, count = asyncio.Event(), asyncio.Event(), [0]

        def connected():
            count[0] += 1
            if count[0] == n:
                all_in.set()

        tasks = [asyncio.ensure_future(listener(session, url, frames, phase, connected, go))
                 for session, phase in zip(sessions, phases)]
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
    finally:
        await asyncio.gather(*(session.close() for session in sessions))
    trips = np.concatenate([np.asarray(r[0]) for r in results]) * 1000
    return {"listeners": n, "frames": int(trips.size),
            "round_trip_ms_median": float(np.median(trips)),
            "round_trip_ms_p99": float(np.percentile(trips, 99)),
            "round_trip_ms_max": float(trips.max()),
            "hops_per_second": sum(r[1] for r in results) / wall,
            "server_cpu_cores": cpu / wall, "client_cpu_cores": own / wall,
            "lag_ms_max": 1000 * max(r[2] for r in results)}


# ---- the attack ---------------------------------------------------------------------------------

def longest_upload(seconds):
    """FLAC of faint noise, exactly the longest recording the server accepts."""
    import soundfile as sf

    f = io.BytesIO()
    rng = np.random.RandomState(1)
    audio = (0.01 * rng.randn(int(seconds * SAMPLE_RATE))).astype(np.float32)
    sf.write(f, audio, SAMPLE_RATE, format="FLAC")
    return f.getvalue()


async def upload_forever(url, address, body, counts):
    """Post the longest recording again and again; a refusal (busy, per-client cap) waits
    half a second before the next try."""
    async with client_session(address) as session:
        while True:
            try:
                async with session.post(url + "api/label", data=body) as response:
                    await response.read()
                    counts[f"upload_{response.status}"] += 1
                    if response.status != 200:
                        await asyncio.sleep(0.5)
            except OSError:
                counts["upload_error"] += 1
                await asyncio.sleep(0.5)


async def idle_forever(url, address, counts):
    """A WebSocket listener that never sends audio; opens again when the server closes it."""
    async with client_session(address) as session:
        while True:
            try:
                async with session.ws_connect(url + "ws") as ws:
                    first = await ws.receive_json()
                    counts["idle_" + ("held" if first["type"] == "ready" else "refused")] += 1
                    while not ws.closed:
                        await ws.receive()
                    counts[f"idle_closed_{ws.close_code}"] += 1
            except (OSError, ValueError, TypeError):
                counts["idle_error"] += 1
            await asyncio.sleep(0.5)


async def slow_forever(host, port, address, counts):
    """Half a request's headers, then nothing (slow loris); again when the server hangs up."""
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(address, 0))
            writer.write(b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\nX-Slow: ")
            await writer.drain()
            started = time.monotonic()
            await reader.read()
            counts["slow_cut_off"] += 1
            counts["slow_held_s"] += time.monotonic() - started
            writer.close()
        except OSError:
            counts["slow_error"] += 1
            await asyncio.sleep(0.5)


def start_attack(url, args, body, counts):
    host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
    tasks = [upload_forever(url, loopback_address(3, i), body, counts)
             for i in range(args.attack_uploads)]
    tasks += [idle_forever(url, loopback_address(4, i // 4), counts)  # 4 an address
              for i in range(args.attack_idle)]
    tasks += [slow_forever(host, int(port), loopback_address(5, i), counts)
              for i in range(args.attack_slow)]
    return [asyncio.ensure_future(t) for t in tasks]


async def settle(pid, idle_cores=0.1, most_s=30.0):
    """Seconds until the server is idle again after an attack (the next level starts there)."""
    started = time.monotonic()
    while time.monotonic() - started < most_s:
        cpu0 = cpu_seconds(pid)
        await asyncio.sleep(1.0)
        if cpu_seconds(pid) - cpu0 < idle_cores:
            break
    return round(time.monotonic() - started, 1)


async def sample_rss(pid, every, samples):
    started = time.monotonic()
    while True:
        with open(f"/proc/{pid}/status") as f:
            rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        samples.append([round(time.monotonic() - started, 1), round(rss_kb / 1024, 1)])
        await asyncio.sleep(every)


# ---- the run ------------------------------------------------------------------------------------

def start_server(model, max_listeners, max_upload_seconds):
    # stderr goes to a file: a pipe nobody reads would stall the server once it filled
    errors = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, "serve.py", "--model", model, "--port", "0",
                             "--max_listeners", str(max_listeners),
                             "--max_upload_seconds", str(max_upload_seconds)],
                            cwd=os.path.dirname(os.path.abspath(__file__)),
                            stdout=subprocess.PIPE, stderr=errors, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    line = proc.stdout.readline()
    if " at http" not in line:
        proc.kill()
        proc.wait()
        errors.seek(0)
        err = errors.read().strip().splitlines()
        raise UserError(f"serve.py did not start: {err[-1] if err else line.strip()}")
    return proc, line.split(" at ")[1].split()[0]


def print_level(level, limit_ms):
    print(f"{level['listeners']:4d} listeners{' under attack' if level['attack'] else ''}: "
          f"round trip median {level['round_trip_ms_median']:6.1f} ms, p99 "
          f"{level['round_trip_ms_p99']:7.1f} ms, max {level['round_trip_ms_max']:7.1f} ms; "
          f"{level['hops_per_second']:6.0f} hops/s; server {level['server_cpu_cores']:.2f} "
          f"cores, clients {level['client_cpu_cores']:.2f}; lag {level['lag_ms_max']:.0f} ms"
          + ("" if level["holds"] else f"  (over {limit_ms:g} ms)"), flush=True)


async def run_levels(args, url, frames, pid, body, rss):
    levels = []
    sampler = asyncio.ensure_future(sample_rss(pid, args.rss_every, rss))
    modes = {"off": [False], "both": [False, True], "only": [True]}[args.attack]
    try:
        for n in args.listeners:
            for attacked in modes:
                counts, attack = collections.Counter(), []
                if attacked:
                    attack = start_attack(url, args, body, counts)
                    await asyncio.sleep(3)  # uploads labelling, idle slots taken
                try:
                    level = await asyncio.wait_for(
                        run_level(url.replace("http://", "ws://") + "ws", frames, n, pid,
                                  args.synchronized), 2 * args.seconds + 30 + n)
                finally:
                    for task in attack:
                        task.cancel()
                    await asyncio.gather(*attack, return_exceptions=True)
                level["attack"] = attacked
                if attacked:
                    level["attack_counts"] = {k: round(v, 1) for k, v in sorted(counts.items())}
                    level["settle_s"] = await settle(pid)
                level["holds"] = (level["round_trip_ms_p99"] < args.limit_ms
                                  and level["lag_ms_max"] < args.limit_ms)
                levels.append(level)
                print_level(level, args.limit_ms)
                if attacked:
                    print(f"     attack: {level['attack_counts']}; server idle again after "
                          f"{level['settle_s']:g} s", flush=True)
    finally:
        sampler.cancel()
    return levels


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.seconds < 2:
        raise UserError("--seconds must be >= 2 (the first second has no hop)")
    if min(args.attack_uploads, args.attack_idle, args.attack_slow) < 0 or \
            args.max_upload_seconds <= 0 or args.rss_every <= 0:
        raise UserError("attack counts must be >= 0, --max_upload_seconds and --rss_every > 0")
    if not os.path.isfile(args.model):
        raise UserError(f"model not found: {args.model}")
    frames = pcm_frames(test_audio(args.seconds, args.wav))
    body = longest_upload(args.max_upload_seconds) if args.attack != "off" else b""
    proc, url = start_server(args.model, max(args.listeners) + args.attack_idle,
                             args.max_upload_seconds)
    rss = []
    try:
        levels = asyncio.run(asyncio.wait_for(run_levels(args, url, frames, proc.pid, body, rss),
                                              args.timeout))
    except TimeoutError:
        raise UserError("the load test ran past its time limit") from None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    held = [lv["listeners"] for lv in levels if lv["holds"] and not lv["attack"]]
    held_attacked = [lv["listeners"] for lv in levels if lv["holds"] and lv["attack"]]
    record = {"machine": machine_description(), "model": args.model, "seconds": args.seconds,
              "synchronized": args.synchronized, "attack": args.attack,
              "attackers": {"uploads": args.attack_uploads, "idle": args.attack_idle,
                            "slow": args.attack_slow,
                            "upload_seconds": args.max_upload_seconds,
                            "upload_bytes": len(body)},
              "frame_ms": FRAME * 1000 / SAMPLE_RATE, "limit_ms": args.limit_ms,
              "levels": levels, "most_listeners_held": max(held) if held else 0,
              "most_listeners_held_under_attack": max(held_attacked) if held_attacked else 0,
              "server_rss_mb": rss}
    print(f"{machine_description()}: holds {record['most_listeners_held']} listeners "
          f"({record['most_listeners_held_under_attack']} under attack) with p99 under "
          f"{args.limit_ms:g} ms; server RSS {rss[0][1]:.0f} -> {rss[-1][1]:.0f} MB "
          f"(max {max(r[1] for r in rss):.0f}) over {rss[-1][0]:.0f} s")
    write_metrics(args.json, record)
    return 0


if __name__ == "__main__":
    run_cli(main)
