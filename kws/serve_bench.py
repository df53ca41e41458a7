"""The load test of serve.py (what benchmark_serve.py runs): N listeners on loopback stream
real-time audio at once, optionally under attack; how long each audio frame waits for its
scores, the server's CPU and memory.

    record = load_test(build_parser().parse_args([...]), root=".")

Every client comes from its own loopback address (127.x.y.z); nothing leaves the machine.
"""

import asyncio
import collections
import io
import os
import subprocess
import sys
import tempfile
import time

import aiohttp
import numpy as np
import soundfile as sf

from kws import SAMPLE_RATE
from kws.audio import stream_wav
from kws.common import UserError, machine_description

FRAME = SAMPLE_RATE // 10  # samples a frame: the page's 100 ms


def stream_audio(seconds, wav=""):
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

def start_server(model, max_listeners, max_upload_seconds, root):
    """`serve.py --port 0` (in folder root) as its own process; returns (process, its URL)."""
    # stderr goes to a file: a pipe nobody reads would stall the server once it filled
    errors = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, "serve.py", "--model", model, "--port", "0",
                             "--max_listeners", str(max_listeners),
                             "--max_upload_seconds", str(max_upload_seconds)],
                            cwd=root,
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
    """Every level of args.listeners, without and/or under attack (args.attack); samples the
    server's RSS into rss meanwhile."""
    levels = []
    sampler = asyncio.ensure_future(sample_rss(pid, args.rss_every, rss))
    modes = {"off": [False], "both": [False, True], "only": [True]}[args.attack]
    try:
        for n in args.listeners:
            for attacked in modes:
                level = await one_level(args, url, frames, pid, body, n, attacked)
                levels.append(level)
                print_level(level, args.limit_ms)
                if attacked:
                    print(f"     attack: {level['attack_counts']}; server idle again after "
                          f"{level['settle_s']:g} s", flush=True)
    finally:
        sampler.cancel()
    return levels


async def one_level(args, url, frames, pid, body, n, attacked):
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
    return level


def load_test(args, root):
    """The whole run of benchmark_serve.py's flags (args) against serve.py in folder root:
    its record, as --json writes it."""
    frames = pcm_frames(stream_audio(args.seconds, args.wav))
    body = longest_upload(args.max_upload_seconds) if args.attack != "off" else b""
    proc, url = start_server(args.model, max(args.listeners) + args.attack_idle,
                             args.max_upload_seconds, root)
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
    return record
