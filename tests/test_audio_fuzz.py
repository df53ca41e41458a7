"""Fuzz audio.decode_wav_bytes: every input decodes to a clean clip or raises AudioError, fast.

CI runs a fixed, derandomized set of examples per strategy. A bigger random fuzz:

    FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest -q -s tests/test_audio_fuzz.py

Each example must return float32 [16000], finite, in [-1, 1], or raise audio.AudioError naming the
input; any other exception fails. Each example has a deadline (no hangs) and a cap on the memory it
may allocate (tracemalloc sees numpy's and scipy's buffers), so a header claiming a huge size or an
absurd sample rate must be refused or handled cheaply, never by allocating gigabytes.
"""

import faulthandler
import io
import os
import struct
import time
import tracemalloc
from collections import Counter
from datetime import timedelta

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kws import audio

BIG = "FUZZ_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "600"))
DEADLINE_S = 2.0  # per example; a normal decode takes about a millisecond
MAX_PEAK_BYTES = 64 * 2**20  # per example; inputs are < 10 KB and 1 s of output is 64 KB
NAME = "fuzz-input.wav"
STATS = Counter()
# An exception raised inside soundfile's C callbacks is only printed, and numpy's overflow or
# invalid-value warnings would reach the user's terminal: both fail the test.
pytestmark = [pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
              pytest.mark.filterwarnings("error::RuntimeWarning")]

FUZZ = settings(max_examples=EXAMPLES, derandomize=not BIG, deadline=timedelta(seconds=DEADLINE_S),
                database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


@pytest.fixture(scope="module", autouse=True)
def hang_guard_and_stats():
    # A hang inside C code cannot be interrupted; dump the stacks and exit rather than block CI.
    faulthandler.dump_traceback_later(max(300, EXAMPLES * 0.2), exit=True)
    t0 = time.perf_counter()
    yield
    faulthandler.cancel_dump_traceback_later()
    if BIG:
        total = sum(STATS.values())
        print(f"\nfuzz: {total} inputs in {time.perf_counter() - t0:.1f} s: "
              + ", ".join(f"{k} {v}" for k, v in sorted(STATS.items())))


def check(data, strategy):
    """The property: a clean clip or AudioError, within the memory cap."""
    tracemalloc.start()  # only around the decode: tracing hypothesis itself is slow
    try:
        out = audio.decode_wav_bytes(data, NAME)
    except audio.AudioError as e:
        assert NAME in str(e)
        STATS[f"{strategy}:refused"] += 1
    else:
        assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (16000,)
        assert np.all(np.isfinite(out)) and np.abs(out).max() <= 1.0
        STATS[f"{strategy}:decoded"] += 1
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < MAX_PEAK_BYTES, f"allocated {peak / 2**20:.0f} MiB for a {len(data)}-byte input"


# ----------------------------------------------------------------------------- seed files


def _encode(seconds, rate, channels, fmt, subtype):
    t = np.arange(int(seconds * rate)) / rate
    x = 0.5 * np.sin(2 * np.pi * 440 * t)
    x = np.stack([x * (0.5 + 0.5 * c / channels) for c in range(channels)], axis=1)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), rate, format=fmt, subtype=subtype)
    return buf.getvalue()


SEED_SPECS = [  # (seconds, rate, channels, format, subtype): small, varied, all readable
    (0.05, 16000, 1, "WAV", "PCM_16"), (0.05, 8000, 1, "WAV", "PCM_U8"),
    (0.05, 44100, 2, "WAV", "PCM_24"), (0.05, 48000, 1, "WAV", "PCM_32"),
    (0.05, 16000, 2, "WAV", "FLOAT"), (0.05, 22050, 1, "WAV", "DOUBLE"),
    (0.05, 8000, 1, "WAV", "ULAW"), (0.05, 8000, 1, "WAV", "ALAW"),
    (0.1, 16000, 1, "WAV", "IMA_ADPCM"), (0.1, 16000, 2, "WAV", "MS_ADPCM"),
    (0.2, 8000, 1, "WAV", "GSM610"), (0.05, 16000, 3, "WAVEX", "PCM_16"),
    (0.05, 16000, 1, "WAVEX", "FLOAT"), (0.05, 16000, 1, "RF64", "PCM_16"),
    (0.05, 16000, 1, "W64", "PCM_16"), (0.05, 16000, 1, "AIFF", "PCM_16"),
    (0.05, 16000, 1, "FLAC", "PCM_16"),
]
SEEDS = [_encode(*spec) for spec in SEED_SPECS]

INTERESTING_U32 = [0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 18, 40, 100, 255, 256, 0x7FFF, 0x8000,
                   0xFFFF, 0x10000, 768000, 768001, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE,
                   0xFFFFFFFF]
INTERESTING_U16 = [0, 1, 2, 3, 4, 8, 12, 16, 24, 32, 64, 65, 255, 0x7FFF, 0x8000, 0xFFFF]


def test_seed_files_decode():
    for spec, data in zip(SEED_SPECS, SEEDS):
        out = audio.decode_wav_bytes(data, str(spec))
        assert out.shape == (16000,) and np.abs(out).max() > 0.05, spec


# ----------------------------------------------------------------------------- WAV builder


def build_wav(tag=1, channels=1, rate=16000, bits=16, block_align=None, byte_rate=None,
              fmt_size=None, extension=b"", chunks=(), data=b"", data_size=None, riff_size=None,
              form=b"WAVE"):
    """A RIFF/WAVE file from explicit fields; None means 'consistent with the rest'."""
    if block_align is None:
        block_align = (channels * bits // 8) & 0xFFFF
    if byte_rate is None:
        byte_rate = (rate * block_align) & 0xFFFFFFFF
    fmt = struct.pack("<HHIIHH", tag, channels, rate, byte_rate, block_align, bits) + extension
    body = form + b"fmt " + struct.pack("<I", len(fmt) if fmt_size is None else fmt_size) + fmt
    for cid, payload in chunks:
        body += cid + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) % 2)
    body += b"data" + struct.pack("<I", len(data) if data_size is None else data_size) + data
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def u32():
    return st.one_of(st.sampled_from(INTERESTING_U32), st.integers(0, 0xFFFFFFFF))


def u16(values=()):
    return st.one_of(st.sampled_from(list(values) or INTERESTING_U16), st.integers(0, 0xFFFF))


GUIDS = {  # KSDATAFORMAT_SUBTYPE_PCM / _IEEE_FLOAT, and anything else
    "pcm": bytes.fromhex("0100000000001000800000aa00389b71"),
    "float": bytes.fromhex("0300000000001000800000aa00389b71"),
}


BASE_FORMATS = [(1, 16), (1, 8), (1, 24), (1, 32), (3, 32), (3, 64), (6, 8), (7, 8)]  # (tag, bits)
ODD_RATES = [16000, 8000, 44100, 48000, 11025, 22050, 100, 101, 7919, 99991, 767999, 768000]


def _extension(draw, bits):
    """cbSize, then maybe the WAVE_FORMAT_EXTENSIBLE fields and some trailing bytes."""
    cb = draw(st.sampled_from([0, 2, 22, 0xFFFF]))
    ext = struct.pack("<H", cb)
    if cb >= 22 or draw(st.booleans()):
        guid = draw(st.one_of(st.sampled_from(list(GUIDS.values())),
                              st.binary(min_size=16, max_size=16)))
        ext += struct.pack("<HI", draw(u16([bits, 0, 24, 0xFFFF])),
                           draw(st.one_of(st.just(0), u32()))) + guid
    return ext + draw(st.binary(max_size=8))


MUTATIONS = {  # header field -> strategy of (plausible, edge or absurd) values
    "tag": u16([1, 3, 6, 7, 2, 0x11, 0x31, 0x55, 0xFFFE, 0]),
    "channels": u16([0, 2, 3, 8, 64, 65, 0xFFFF]),
    "rate": st.one_of(st.sampled_from([0, 1, 99, 768001]), u32()),
    "bits": u16([0, 4, 8, 12, 16, 20, 24, 32, 48, 64, 0xFFFF]),
    "block_align": u16(), "byte_rate": u32(), "data_size": u32(), "riff_size": u32(),
    "fmt_size": st.one_of(st.sampled_from([0, 14, 15, 16, 18, 40]), u32()),
    "form": st.sampled_from([b"WAVX", b"RF64", b"\0\0\0\0"]),
    "chunks": st.lists(st.tuples(st.sampled_from([b"LIST", b"fact", b"JUNK", b"cue ", b"smpl",
                                                  b"PEAK", b"data", b"fmt "]),
                                 st.binary(max_size=24)), min_size=1, max_size=3),
}


@st.composite
def wav_headers(draw):
    """A consistent WAV (odd sample rates included) with 0-4 header fields mutated, an
    optional fmt extension, and an optional truncation."""
    tag, bits = draw(st.sampled_from(BASE_FORMATS))
    channels = draw(st.sampled_from([1, 1, 2, 3, 8]))
    fields = {"tag": tag, "bits": bits, "channels": channels,
              "rate": draw(st.sampled_from(ODD_RATES))}
    for name in draw(st.sets(st.sampled_from(sorted(MUTATIONS)), max_size=4)):
        fields[name] = draw(MUTATIONS[name])
    if draw(st.booleans()):
        fields["extension"] = _extension(draw, bits)
    fields["data"] = draw(st.one_of(  # (st.binary of this size is slow to draw)
        st.tuples(st.integers(0, 4000), st.integers(0, 2**32 - 1)).map(
            lambda t: np.random.default_rng(t[1]).bytes(t[0])),
        st.integers(0, 4000).map(lambda n: SEEDS[0][44:44 + n])))
    wav = build_wav(**fields)
    cut = draw(st.one_of(st.none(), st.none(), st.integers(0, len(wav))))
    return wav if cut is None else wav[:cut]


@st.composite
def mutated_seeds(draw):
    """A valid file of some format with a few header ints, bytes or slices changed."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        kind = draw(st.sampled_from(["u32", "u16", "byte", "cut", "dup", "delete"]))
        pos = draw(st.integers(0, min(len(data) - 1, 120)))  # headers live near the start
        if kind == "u32":
            data[pos:pos + 4] = struct.pack(
                draw(st.sampled_from(["<I", ">I"])), draw(st.sampled_from(INTERESTING_U32)))
        elif kind == "u16":
            data[pos:pos + 2] = struct.pack("<H", draw(st.sampled_from(INTERESTING_U16)))
        elif kind == "byte":
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[draw(st.integers(0, len(data))):]
        elif kind == "dup":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 64))]
        else:
            del data[pos:pos + draw(st.integers(1, 16))]
    return bytes(data)


# ----------------------------------------------------------------------------- properties


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data):
    check(data, "random")


@FUZZ
@given(st.binary(min_size=4, max_size=4), st.binary(max_size=2048))
def test_random_bytes_after_riff_wave(size, rest):
    check(b"RIFF" + size + b"WAVE" + rest, "riff")


@FUZZ
@given(wav_headers())
def test_mutated_wav_headers(data):
    check(data, "header")


@FUZZ
@given(mutated_seeds())
def test_mutated_valid_files(data):
    check(data, "mutated")


PI_PATH = settings(FUZZ, max_examples=max(EXAMPLES // 4, 50))


@PI_PATH
@given(st.one_of(mutated_seeds(), wav_headers()))
def test_the_pi_path_and_the_training_path_decode_alike(data):
    """make_submission_on_rpi.py reads a file into the very samples the training cache and
    make_submission.py get (read_many), or refuses it as they do."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, NAME)
        with open(path, "wb") as f:
            f.write(data)
        try:
            pi = audio.read_wav(path)  # the reader make_submission_on_rpi.py calls
        except audio.AudioError as e:
            assert NAME in str(e)
            pi = None
        batch, kept = audio.read_many([path], workers=1, errors=[])
    if pi is None:
        assert len(kept) == 0
    else:
        np.testing.assert_array_equal(pi, batch[0])


# ----------------------------------------------------------------------------- known hard cases


@pytest.mark.parametrize("rate", [767999, 99991, 7919, 101, 100, 768000])
def test_awkward_sample_rates_are_cheap(rate):
    data = build_wav(rate=rate, data=SEEDS[0][44:2044])
    t0 = time.perf_counter()
    check(data, "rate")  # memory cap included
    assert time.perf_counter() - t0 < 0.5


@pytest.mark.parametrize("value", [3.0e38, -3.4e38, 1e30, 1.5, np.inf, np.nan])
@pytest.mark.parametrize("channels", [1, 2])
def test_extreme_float_samples(value, channels):
    samples = np.full((800, channels), 0.25, dtype=np.float32)
    samples[100:110] = value
    samples[200:210, -1] = -abs(value) if np.isfinite(value) else value
    data = build_wav(tag=3, bits=32, channels=channels, data=samples.tobytes())
    check(data, "float")
    if np.isfinite(value):
        out = audio.decode_wav_bytes(data, NAME)
        assert np.abs(out[:50]).max() == pytest.approx(0.25, abs=0.02)


@pytest.mark.parametrize("fields", [
    {"data_size": 0xFFFFFFFF}, {"data_size": 0x7FFFFFFF}, {"riff_size": 0xFFFFFFFF},
    {"channels": 0xFFFF}, {"channels": 0}, {"rate": 0}, {"rate": 0xFFFFFFFF}, {"bits": 0xFFFF},
    {"block_align": 0}, {"block_align": 0xFFFF}, {"fmt_size": 0xFFFFFFFF}, {"tag": 0xFFFF},
])
def test_absurd_header_fields_are_refused_fast(fields):
    data = build_wav(**{"data": SEEDS[0][44:1044], **fields})
    t0 = time.perf_counter()
    check(data, "absurd")
    assert time.perf_counter() - t0 < 0.5
