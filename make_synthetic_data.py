"""Make a Speech Commands style data set offline: synthetic speakers say words through espeak-ng.

    python make_synthetic_data.py --out_dir data/synthetic

Writes the Kaggle layout of the TensorFlow Speech Recognition Challenge: `train/audio/<word>/
<speaker>_nohash_<n>.wav`, `train/audio/_background_noise_/` (coloured noise from
noise.py), `train/validation_list.txt` and `train/testing_list.txt` (split by speaker),
an unlabelled `test/audio/clip_<hex>.wav` folder with its answer key `test/answers.csv`
(fname,label as in a submission: a word, `silence` or `unknown`), and a README.md.

A synthetic speaker is one espeak-ng voice (every English voice found: en, en-us, en-029,
en-gb-scotland, ...) with one voice variant (+m3, +f2, +croak, +whisper, ...), a pitch, a pitch
range and a speaking rate; its id is the first 8 hex digits of a hash of that combination. espeak-ng
runs in process through ctypes (the library and voices of the espeakng-loader package). Each clip is
trimmed, resampled from 22050 to 16000 Hz, sped up if longer than 0.95 s, coloured by a short
synthetic room impulse and a random EQ, placed at a random offset in one second at a random level,
over a faint noise floor (and sometimes light noise). Test clips come from speakers whose pitch,
range and rate values never occur in training. The same flags and --seed give the same bytes.
Rerunning with the same flags keeps the files already written (all writes are atomic), so an
interrupted run resumes; other flags regenerate the folder from scratch. Optionally, Piper voices
(--piper_voice, needs the piper-tts package, not installed by default) add neural-TTS speakers.
"""

import argparse
import csv
import ctypes
import dataclasses
import functools
import hashlib
import io
import json
import math
import multiprocessing
import os
import re
import shlex
import sys
import time
from fractions import Fraction

import numpy as np

from kws import noise as colored
from kws.audio import CLIP_SAMPLES, SAMPLE_RATE, write_wav
from kws.common import UserError, atomic_write_text, run_cli
from kws.folders import BACKGROUND_NOISE_DIR_NAME
from kws.labels import COMPETITION_WORDS

FORMAT_VERSION = 1
STAMP_NAME = ".make_synthetic_data.json"
V1_WORDS = ("bed bird cat dog down eight five four go happy house left marvin nine no off on one "
            "right seven sheila six stop three tree two up wow yes zero").split()
# Words for the test set's `unknown` clips; those in --words are left out.
UNSEEN_WORDS = ("backward follow forward learn visual apple water table window music paper river "
                "garden yellow orange purple hello thanks maybe never always zebra pencil rocket "
                "coffee little number person start stand dig bet bat sit yet dawn lift often gone "
                "top cup net known button hop ten now").split()
# Grid values of a speaker; the test set's speakers use the TEST values only, so they are new.
TRAIN_PITCHES, TEST_PITCHES = (20, 35, 50, 65, 80), (27, 42, 57, 72)
TRAIN_RANGES, TEST_RANGES = (20, 50, 80), (35, 65)
TRAIN_RATES, TEST_RATES = (130, 150, 175, 200, 235), (140, 162, 187, 217)
TRAIN_LENGTH_SCALES, TEST_LENGTH_SCALES = (0.8, 0.9, 1.0, 1.12, 1.25), (0.85, 0.95, 1.06, 1.18)
PIPER_MAX_SPEAKERS = 16  # of a multi-speaker Piper voice
MAX_WORD_SECONDS = 0.95
JOBS_PER_CHUNK = 8  # speakers said by one fresh process; part of the recipe (changes the bytes)
PUNCTUATION = ((".", 0.5), ("!", 0.2), ("?", 0.15), (",", 0.15))  # varies the intonation
BAD_WORD_RE = re.compile(r"[/\\\x00-\x1f]|^[._ ]|\s$")  # unsafe as a folder name

# espeak-ng API constants (speak_lib.h)
AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_INITIALIZE_DONT_EXIT = 0x8000
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
ESPEAK_RATE, ESPEAK_PITCH, ESPEAK_RANGE = 1, 3, 4


# ---- espeak-ng through ctypes -------------------------------------------------------------------
class _Voice(ctypes.Structure):
    """espeak_VOICE of speak_lib.h."""
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p),
                ("identifier", ctypes.c_char_p), ("gender", ctypes.c_ubyte),
                ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte), ("xx1", ctypes.c_ubyte),
                ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


class Espeak:
    """espeak-ng in this process, synthesising into numpy arrays through a callback.

    The library keeps state between utterances (glottal phase, flutter, noise generator), so the
    same text can come out slightly different depending on what was said before. We therefore only
    use it in forked child processes that never inherit an initialised library (see `run_jobs`),
    each saying a fixed list of utterances in a fixed order: that makes every byte reproducible.
    """

    _CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                 ctypes.c_void_p)

    def __init__(self):
        import espeakng_loader

        self.data_path = espeakng_loader.get_data_path()
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_SetSynthCallback.argtypes = [self._CALLBACK]
        lib.espeak_GetCurrentVoice.restype = ctypes.POINTER(_Voice)
        self.lib = lib
        self.sample_rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 200,
                                                 self.data_path.encode(),
                                                 ESPEAK_INITIALIZE_DONT_EXIT)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise with data in {self.data_path}")
        self._chunks = []
        self._callback = self._CALLBACK(self._collect)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._set_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._set_seed is not None:
            self._set_seed.argtypes = [ctypes.c_long]

    def _collect(self, wav, num_samples, events):
        if wav and num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0

    def set_voice(self, name):
        """Select 'en-us' or 'en-us+m3'; False if espeak-ng lacks the voice or the variant.

        espeak-ng silently ignores an unknown variant, but names a loaded one in the voice's
        identifier ('gmw/en-US+m3'), so that is what we check.
        """
        if self.lib.espeak_SetVoiceByName(name.encode("utf-8")) != 0:
            return False
        variant = name.partition("+")[2]
        current = self.lib.espeak_GetCurrentVoice()
        identifier = (current.contents.identifier or b"").decode("utf-8", "replace")
        return not variant or identifier.endswith("+" + variant)

    def set_prosody(self, pitch, pitch_range, rate):
        self.lib.espeak_SetParameter(ESPEAK_PITCH, int(pitch), 0)
        self.lib.espeak_SetParameter(ESPEAK_RANGE, int(pitch_range), 0)
        self.lib.espeak_SetParameter(ESPEAK_RATE, int(rate), 0)

    def synth(self, text, seed=0):
        """Say text with the current voice: float32 samples at self.sample_rate.

        seed feeds espeak-ng's noise generator (breath, whisper, klatt), which otherwise
        starts from the clock.
        """
        if self._set_seed is not None:
            self._set_seed(int(seed) & 0x7FFFFFFF)
        self._chunks = []
        data = text.encode("utf-8")
        status = self.lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8,
                                       None, None)
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status} on {text!r}")
        if not self._chunks:
            return np.zeros(0, np.float32)
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0


def espeak_data_path():
    import espeakng_loader

    return espeakng_loader.get_data_path()


def espeak_version():
    """The espeakng-loader package version: another espeak-ng may say things differently."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("espeakng-loader")
    except PackageNotFoundError:
        return "unknown"


def find_english_voices(data_path):
    """English voices of the espeak-ng data, from the voice files: {'en-us': 'gmw/en-US', ...}."""
    lang_dir = os.path.join(data_path, "lang")
    voices = {}
    for folder, _, files in os.walk(lang_dir):
        for name in files:
            path = os.path.join(folder, name)
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    first_language = next((line.split()[1] for line in f
                                           if line.startswith("language ") and
                                           len(line.split()) > 1), "")
            except OSError:
                continue
            if first_language == "en" or first_language.startswith("en-"):
                voices[name.lower()] = os.path.relpath(path, lang_dir)
    return dict(sorted(voices.items()))


def find_variants(data_path):
    """Voice variant names (the files of espeak-ng-data/voices/!v): m1..m8, f1..f5, croak, ..."""
    folder = os.path.join(data_path, "voices", "!v")
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f)))


def audible(samples, rate, min_seconds=0.05):
    """True if samples hold at least min_seconds of sound above a faint threshold."""
    return len(trim_silence(samples, rate)) >= min_seconds * rate and np.max(np.abs(samples)) > 0.01


def probe_espeak(voices, variants, words):
    """Which voices, variants and words espeak-ng really says (run in a child process)."""
    engine = Espeak()
    ok_voices = [v for v in voices
                 if engine.set_voice(v) and audible(engine.synth("yes"), engine.sample_rate)]
    ok_variants = [v for v in variants if engine.set_voice(f"{ok_voices[0]}+{v}") and
                   audible(engine.synth("yes"), engine.sample_rate)] if ok_voices else []
    engine.set_voice(ok_voices[0] if ok_voices else "en")
    engine.set_prosody(50, 50, 175)
    silent = [w for w in words if not audible(engine.synth(w), engine.sample_rate)]
    return {"sample_rate": engine.sample_rate, "voices": ok_voices, "variants": ok_variants,
            "silent_words": silent}


# ---- synthetic speakers ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Speaker:
    voice: str
    variant: str  # "" for the plain voice
    pitch: int
    pitch_range: int
    rate: int

    @property
    def espeak_name(self):
        return f"{self.voice}+{self.variant}" if self.variant else self.voice

    @property
    def id(self):
        key = f"espeak|{self.voice}|{self.variant}|{self.pitch}|{self.pitch_range}|{self.rate}"
        return hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]

    def describe(self):
        return (f"{self.espeak_name} pitch={self.pitch} range={self.pitch_range} "
                f"rate={self.rate}")


@dataclasses.dataclass(frozen=True)
class PiperSpeaker:
    """A speaker of a Piper voice model (optional: needs the piper-tts package)."""
    model: str          # path to the .onnx voice; its .onnx.json sits beside it
    speaker: int        # speaker number of a multi-speaker model, else 0
    length_scale: float

    @property
    def id(self):
        key = f"piper|{os.path.basename(self.model)}|{self.speaker}|{self.length_scale}"
        return hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]

    def describe(self):
        return (f"piper {os.path.basename(self.model)} speaker={self.speaker} "
                f"length_scale={self.length_scale}")


class Piper:
    """A Piper voice, with its noise turned off so the same text gives the same samples."""

    def __init__(self, model):
        from piper import PiperVoice

        self.voice = PiperVoice.load(model)
        self.sample_rate = int(self.voice.config.sample_rate)
        self.multi_speaker = int(getattr(self.voice.config, "num_speakers", 1)) > 1

    def synth(self, text, speaker, length_scale):
        speaker = speaker if self.multi_speaker else None
        try:
            from piper import SynthesisConfig  # piper-tts >= 1.3
        except ImportError:  # piper-tts 1.2: raw 16-bit chunks
            raw = b"".join(self.voice.synthesize_stream_raw(
                text, speaker_id=speaker, length_scale=length_scale, noise_scale=0.0,
                noise_w=0.0))
            return np.frombuffer(raw, np.int16).astype(np.float32) / 32768.0
        config = SynthesisConfig(speaker_id=speaker, length_scale=length_scale, noise_scale=0.0,
                                 noise_w_scale=0.0)
        chunks = [np.asarray(c.audio_float_array, np.float32)
                  for c in self.voice.synthesize(text, syn_config=config)]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def piper_speaker_counts(models):
    """{model: speakers to use} from each voice's .onnx.json; checks piper-tts is installed."""
    import importlib.util

    if not models:
        return {}
    if importlib.util.find_spec("piper") is None:
        raise UserError("--piper_voice needs the piper-tts package, which is not installed "
                        "(pip install piper-tts)")
    counts = {}
    for model in models:
        if not os.path.isfile(model):
            raise UserError(f"Piper voice not found: {model}")
        config_path = model + ".json"
        try:
            with open(config_path, encoding="utf-8") as f:
                speakers = int(json.load(f).get("num_speakers", 1))
        except (OSError, ValueError, TypeError, AttributeError) as e:
            raise UserError(f"cannot read the Piper voice config {config_path}: {e}") from None
        counts[os.path.abspath(model)] = max(1, min(speakers, PIPER_MAX_SPEAKERS))
    return counts


def stable_seed(*parts):
    """A 63-bit seed from any parts (strings, ints): the same everywhere, unlike hash()."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def sample_speakers(count, voices, variants, pitches, ranges, rates, seed, stream):
    """count distinct speakers drawn without replacement from the grid, in a fixed order."""
    grid = (voices, [""] + list(variants), pitches, ranges, rates)
    shape = tuple(len(g) for g in grid)
    total = math.prod(shape)
    if count > total:
        raise UserError(f"only {total} distinct {stream} speakers with these voices and variants; "
                        f"ask for at most {total}")
    rng = np.random.default_rng(stable_seed(seed, "speakers", stream))
    picks = rng.choice(total, size=count, replace=False)
    speakers = []
    for flat in picks:
        v, var, p, r, s = np.unravel_index(int(flat), shape)
        speakers.append(Speaker(grid[0][v], grid[1][var], int(grid[2][p]), int(grid[3][r]),
                                int(grid[4][s])))
    return speakers


def sample_pool(count, config, voices, variants, stream):
    """count speakers for stream 'train' or 'test': espeak-ng ones, plus a --piper_share of
    Piper ones when Piper voices are given, in a seeded random order."""
    test = stream == "test"
    piper = [PiperSpeaker(model, n, scale)
             for model, speakers in sorted(config.get("piper_voices", {}).items())
             for n in range(speakers)
             for scale in (TEST_LENGTH_SCALES if test else TRAIN_LENGTH_SCALES)]
    rng = np.random.default_rng(stable_seed(config["seed"], "pool", stream))
    n_piper = min(len(piper), int(round(count * config.get("piper_share", 0.0)))) if piper else 0
    picked = [piper[i] for i in sorted(rng.choice(len(piper), n_piper, replace=False))]
    espeak = sample_speakers(count - n_piper, voices, variants,
                             TEST_PITCHES if test else TRAIN_PITCHES,
                             TEST_RANGES if test else TRAIN_RANGES,
                             TEST_RATES if test else TRAIN_RATES, config["seed"], stream)
    if not picked:
        return espeak
    pool = espeak + picked
    return [pool[i] for i in rng.permutation(len(pool))]


def by_engine(jobs):
    """espeak-ng jobs first, then Piper jobs grouped by model: a chunk loads few Piper models."""
    return sorted(jobs, key=lambda j: ("" if not isinstance(j.speaker, PiperSpeaker)
                                       else j.speaker.model))


# ---- turning an utterance into a one-second clip ------------------------------------------------
def trim_silence(samples, rate, threshold_db=-40.0, margin_ms=15.0, frame_ms=5.0):
    """Cut the leading and trailing frames quieter than threshold_db below the loudest frame."""
    frame = max(1, int(rate * frame_ms / 1000))
    count = len(samples) // frame
    if count == 0:
        return samples[:0]
    energy = np.sqrt(np.mean(samples[:count * frame].reshape(count, frame) ** 2, axis=1))
    if energy.max() <= 0:
        return samples[:0]
    active = np.flatnonzero(energy > energy.max() * 10 ** (threshold_db / 20))
    margin = int(rate * margin_ms / 1000)
    start = max(0, active[0] * frame - margin)
    end = min(len(samples), (active[-1] + 1) * frame + margin)
    return samples[start:end]


def fit_duration(samples, max_samples):
    """Speed a too-long word up (resampling raises its pitch a little) to at most max_samples."""
    if len(samples) <= max_samples:
        return samples
    from scipy.signal import resample_poly

    ratio = Fraction(max_samples, len(samples)).limit_denominator(64)
    return resample_poly(samples, ratio.numerator, ratio.denominator)[:max_samples]


def room_impulse(rng, rate=SAMPLE_RATE):
    """A short synthetic room: the direct sound plus an exponentially decaying noise tail."""
    rt60 = rng.uniform(0.05, 0.45)
    length = int(rate * min(rt60, 0.25))
    t = np.arange(length) / rate
    tail = rng.standard_normal(length) * 10 ** (-3 * t / rt60)  # -60 dB after rt60 seconds
    tail[:int(rate * rng.uniform(0.002, 0.012))] = 0.0  # first reflections arrive a bit later
    tail *= 10 ** (rng.uniform(-24, -8) / 20) / max(np.sqrt(np.sum(tail ** 2)), 1e-9)
    tail[0] = 1.0
    return tail


HIGHPASS_HZ = (60, 80, 100, 125, 160, 200, 250, 300)
LOWPASS_HZ = (2500, 3000, 3500, 4000, 4500, 5000, 5500, 6000, 6500, 7000, 7500)


@functools.lru_cache(maxsize=64)
def _butter(cutoff, kind, rate):
    from scipy.signal import butter

    return butter(2, cutoff, kind, fs=rate, output="sos")


def random_eq(samples, rng, rate=SAMPLE_RATE):
    """A random microphone/room colouring: maybe a high-pass, maybe a low-pass, maybe a tilt."""
    from scipy.signal import lfilter, sosfilt

    if rng.random() < 0.5:
        samples = sosfilt(_butter(HIGHPASS_HZ[rng.integers(len(HIGHPASS_HZ))], "highpass", rate),
                          samples)
    if rng.random() < 0.5:
        samples = sosfilt(_butter(LOWPASS_HZ[rng.integers(len(LOWPASS_HZ))], "lowpass", rate),
                          samples)
    if rng.random() < 0.5:  # first-order tilt: a brighter or duller microphone
        a = rng.uniform(-0.5, 0.5)
        samples = lfilter([1.0, -a], [1.0], samples) / (1 + abs(a))
    return samples


def add_noise(clip, rng, level_db):
    """Mix in coloured noise at an RMS of level_db dBFS."""
    color = rng.choice(list(colored.COLORS))
    noise = colored.colored_noise(len(clip), str(color), rng)
    return clip + noise * 10 ** (level_db / 20)


@functools.lru_cache(maxsize=4)
def _resampling_filter(up, down):
    from scipy.signal import firwin

    return firwin(20 * max(up, down) + 1, 1.0 / max(up, down), window=("kaiser", 5.0))


def resample_to_16k(samples, rate):
    """audio.resample with the polyphase filter designed once, not for every clip."""
    from scipy.signal import resample_poly

    g = math.gcd(int(rate), SAMPLE_RATE)
    up, down = SAMPLE_RATE // g, int(rate) // g
    if up == down:
        return samples
    return resample_poly(samples, up, down, window=_resampling_filter(up, down))


def render_clip(speech, rate, rng, options):
    """An utterance (float samples at rate) -> float32 [16000]: trimmed, sped up if too long,
    coloured by a room and an EQ, placed at a random offset, at a random level, over noise."""
    word = resample_to_16k(trim_silence(speech.astype(np.float64), rate), rate)
    word = fit_duration(word, int(MAX_WORD_SECONDS * SAMPLE_RATE))
    word = word / max(np.max(np.abs(word)), 1e-9)
    if rng.random() < options["reverb_probability"]:
        from scipy.signal import fftconvolve

        wet = fftconvolve(word, room_impulse(rng))
    else:
        wet = word
    clip = np.zeros(CLIP_SAMPLES)
    offset = int(rng.integers(0, CLIP_SAMPLES - len(word) + 1))
    wet = wet[:CLIP_SAMPLES - offset]
    clip[offset:offset + len(wet)] = wet
    clip = random_eq(clip, rng)
    clip *= 10 ** (rng.uniform(-24, -2) / 20) / max(np.max(np.abs(clip)), 1e-9)
    speech_db = 20 * np.log10(max(np.sqrt(np.mean(clip[offset:offset + len(word)] ** 2)), 1e-9))
    clip = add_noise(clip, rng, rng.uniform(-75, -55))  # a faint floor: no digital silence
    if rng.random() < options["noise_probability"]:
        clip = add_noise(clip, rng, speech_db - rng.uniform(10, 30))
    return np.clip(clip, -1.0, 1.0).astype(np.float32)


def render_silence(rng):
    """A `silence` test clip: one or two noise colours at a low random level."""
    clip = add_noise(np.zeros(CLIP_SAMPLES), rng, rng.uniform(-60, -25))
    if rng.random() < 0.3:
        clip = add_noise(clip, rng, rng.uniform(-65, -35))
    return np.clip(clip, -1.0, 1.0).astype(np.float32)


def utterance_text(word, rng):
    marks, weights = zip(*PUNCTUATION)
    return word + marks[int(rng.choice(len(marks), p=weights))]


# ---- jobs: one speaker's clips, said in a fresh process ----------------------------------------
@dataclasses.dataclass
class Job:
    speaker: Speaker  # None for silence clips
    clips: list       # [(path relative to out_dir, word or None, per-clip seed)], said in order
    options: dict


def job_paths(jobs, out_dir):
    return [os.path.join(out_dir, rel) for job in jobs for rel, _, _ in job.clips]


def say(engines, speaker, word, rng, seed):
    """One utterance of word by speaker: (float32 samples, sample rate). engines caches the
    process's espeak-ng and Piper models."""
    text = utterance_text(word, rng)
    if isinstance(speaker, PiperSpeaker):
        if speaker.model not in engines:
            engines[speaker.model] = Piper(speaker.model)
        engine = engines[speaker.model]
        scale = speaker.length_scale * rng.uniform(0.95, 1.05)
        return engine.synth(text, speaker.speaker, scale), engine.sample_rate
    engine = engines["espeak"]
    # every repetition differs a little, as a person's would
    engine.set_prosody(np.clip(speaker.pitch + rng.integers(-4, 5), 0, 99),
                       speaker.pitch_range,
                       np.clip(speaker.rate * rng.uniform(0.93, 1.07), 80, 450))
    return engine.synth(text, seed), engine.sample_rate


def run_chunk(jobs, out_dir, skip_existing):
    """Write the clips of a chunk of jobs, in order, in this (fresh) process; return the count
    written. The whole chunk is said even when some files exist: espeak-ng's state after each
    utterance shapes the next one, so skipping would change the bytes of the rest."""
    engines = {}
    written = 0
    for job in jobs:
        speaker = job.speaker
        if isinstance(speaker, Speaker):
            if "espeak" not in engines:
                engines["espeak"] = Espeak()
            if not engines["espeak"].set_voice(speaker.espeak_name):
                raise RuntimeError(f"espeak-ng has no voice {speaker.espeak_name!r}")
        for rel, word, seed in job.clips:
            rng = np.random.default_rng(seed)
            if speaker is None:
                clip = render_silence(rng)
            else:
                speech, rate = say(engines, speaker, word, rng, seed)
                if not audible(speech, rate):
                    raise RuntimeError(f"no audio for {word!r} from {speaker.describe()}")
                clip = render_clip(speech, rate, rng, job.options)
            path = os.path.join(out_dir, rel)
            if not (skip_existing and os.path.isfile(path)):
                write_wav(path, clip)
                written += 1
    return written


def _child_main(conn, fn, args):
    try:
        result = ("ok", fn(*args))
    except BaseException as e:  # everything, even SystemExit, goes back to the parent
        result = ("error", e)
    try:
        conn.send(result)
    except Exception:  # an exception that does not pickle
        conn.send(("error", RuntimeError(repr(result[1]))))
    conn.close()


def run_forked(tasks, workers, on_done=None):
    """Run each (fn, args) in a newly forked child process, `workers` at a time; return results.

    We fork from this thread only, with no other thread running: multiprocessing.Pool's
    maxtasksperchild forks from a helper thread while others hold locks, and its children
    sometimes hang. A fresh child per task also means a fresh espeak-ng (this process never
    initialises it). A child's exception is raised here.
    """
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("fork")
    pending = list(enumerate(tasks))[::-1]
    running = {}  # parent end of a pipe -> (task index, process)
    results = [None] * len(tasks)
    try:
        while pending or running:
            while pending and len(running) < max(1, workers):
                index, (fn, args) = pending.pop()
                parent_end, child_end = ctx.Pipe(duplex=False)
                process = ctx.Process(target=_child_main, args=(child_end, fn, args), daemon=True)
                process.start()
                child_end.close()
                running[parent_end] = (index, process)
            for conn in wait(list(running)):
                index, process = running.pop(conn)
                try:
                    status, value = conn.recv()
                except EOFError:
                    status, value = "error", RuntimeError(
                        f"a worker process died (exit code {process.exitcode})")
                conn.close()
                process.join()
                if status == "error":
                    raise value
                results[index] = value
                if on_done:
                    on_done(index, value)
    finally:
        for conn, (_, process) in running.items():
            process.terminate()
            process.join()
            conn.close()
    return results


def run_in_child(fn, *args):
    """fn(*args) in a forked child: espeak-ng state never leaks into this process."""
    return run_forked([(fn, args)], 1)[0]


def chunked(jobs, size=JOBS_PER_CHUNK):
    """Fixed chunks of the job list: what one fresh process says, whatever --workers is."""
    return [jobs[i:i + size] for i in range(0, len(jobs), size)]


def run_jobs(jobs, out_dir, skip_existing, workers, progress=True):
    """Say every chunk of jobs in its own forked process, workers at a time; return the count
    of files written. With skip_existing, chunks whose files all exist are skipped."""
    from tqdm import tqdm

    chunks = chunked(jobs)
    if skip_existing:
        chunks = [c for c in chunks if not all(os.path.isfile(p) for p in job_paths(c, out_dir))]
    if not chunks:
        return 0
    sizes = [sum(len(job.clips) for job in chunk) for chunk in chunks]
    tqdm.monitor_interval = 0  # no monitor thread: we fork from this process
    with tqdm(total=sum(sizes), desc="clips", unit="clip", disable=not progress,
              mininterval=0.5, file=sys.stderr) as bar:
        counts = run_forked([(run_chunk, (chunk, out_dir, skip_existing)) for chunk in chunks],
                            workers, lambda index, _: bar.update(sizes[index]))
    return sum(counts)


# ---- the plan: every file, its speaker and its seed ---------------------------------------------
def split_counts(total, validation_percentage, testing_percentage):
    """(training, validation, testing) counts of total, at least one each where asked for."""
    def part(pct):
        if pct <= 0 or total < 3:
            return 0
        return max(1, int(round(total * pct / 100)))
    val, test = part(validation_percentage), part(testing_percentage)
    if val + test >= total:
        raise UserError(f"{total} speakers cannot be split {validation_percentage}% / "
                        f"{testing_percentage}% and still leave some for training")
    return total - val - test, val, test


def plan_training(config, voices, variants):
    """Training jobs (one per speaker) and {set: [relative list paths]}."""
    seed = config["seed"]
    pool = sample_pool(config["max_speakers"], config, voices, variants, "train")
    n_train, n_val, n_test = split_counts(len(pool), config["validation_percentage"],
                                          config["testing_percentage"])
    groups = {"training": pool[:n_train], "validation": pool[n_train:n_train + n_val],
              "testing": pool[n_train + n_val:]}
    per_word = dict(zip(("training", "validation", "testing"),
                        split_counts(config["speakers_per_word"], config["validation_percentage"],
                                     config["testing_percentage"])))
    rng = np.random.default_rng(stable_seed(seed, "assign"))
    said = {s.id: [] for s in pool}  # speaker id -> [(word, n)]
    lists = {"training": [], "validation": [], "testing": []}
    for word in config["words"]:
        for which, group in groups.items():
            chosen = rng.choice(len(group), size=min(per_word[which], len(group)), replace=False)
            for i in sorted(chosen):
                for n in range(config["repeats"]):
                    said[group[i].id].append((word, n))
                    lists[which].append(f"{word}/{group[i].id}_nohash_{n}.wav")
    options = {k: config[k] for k in ("reverb_probability", "noise_probability")}
    jobs = []
    for speaker in pool:
        clips = [(os.path.join("train", "audio", word, f"{speaker.id}_nohash_{n}.wav"), word,
                  stable_seed(seed, "train", speaker.id, word, n))
                 for word, n in said[speaker.id]]
        if clips:
            jobs.append(Job(speaker, clips, options))
    return by_engine(jobs), lists, groups


def test_label_counts(config):
    """How many test clips of each answer label: one share per test word and for silence, two
    for unknown (the Kaggle test set has many more unknown clips than any one word)."""
    labels = list(config["test_words"]) + ["silence"]
    has_unknown = bool(config["unknown_words"] or config["aux_words"])
    shares = len(labels) + (2 if has_unknown else 0)
    per_share = config["test_clips"] // shares
    counts = {label: per_share for label in labels}
    if has_unknown:
        counts["unknown"] = config["test_clips"] - per_share * len(labels)
    else:
        counts["silence"] += config["test_clips"] - per_share * shares
    return counts


def plan_test(config, voices, variants):
    """Test jobs and the answer key [(fname, label)] for test/audio."""
    seed = config["seed"]
    if config["test_clips"] == 0:
        return [], [], []
    speakers = sample_pool(config["test_speakers"], config, voices, variants, "test")
    rng = np.random.default_rng(stable_seed(seed, "test plan"))
    by_speaker = {s.id: [] for s in speakers}
    silence, answers = [], []
    index = 0
    for label, count in test_label_counts(config).items():
        for _ in range(count):
            index += 1
            fname = f"clip_{hashlib.sha1(f'{seed}|test|{index}'.encode()).hexdigest()[:10]}.wav"
            rel = os.path.join("test", "audio", fname)
            clip_seed = stable_seed(seed, "test", index)
            answers.append((fname, label))
            if label == "silence":
                silence.append((rel, None, clip_seed))
                continue
            word = label
            if label == "unknown":
                pools = [p for p in (config["unknown_words"], config["aux_words"]) if p]
                choice = pools[int(rng.integers(len(pools)))]
                word = choice[int(rng.integers(len(choice)))]
            speaker = speakers[int(rng.integers(len(speakers)))]
            by_speaker[speaker.id].append((rel, word, clip_seed))
    options = {k: config[k] for k in ("reverb_probability", "noise_probability")}
    jobs = by_engine([Job(s, by_speaker[s.id], options) for s in speakers if by_speaker[s.id]])
    if silence:
        jobs.append(Job(None, silence, options))
    return jobs, sorted(answers), speakers


# ---- the output folder --------------------------------------------------------------------------
def read_stamp(out_dir):
    path = os.path.join(out_dir, STAMP_NAME)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def prepare_out_dir(out_dir, config, files):
    """Decide what can be kept. Returns True if existing files of the same config may be kept.

    The stamp file records the config and every file it makes. Same config: keep what is there
    (an interrupted run resumes). Other config: delete the old run's files first, so a half-done
    run of the new config never mixes with the old one. A non-empty folder without a stamp is
    refused: it is not ours to overwrite.
    """
    stamp = read_stamp(out_dir)
    if stamp is None:
        if os.path.isdir(out_dir) and os.listdir(out_dir):
            raise UserError(f"{out_dir} is not empty and was not made by make_synthetic_data.py "
                            f"(no {STAMP_NAME}); choose a new or empty --out_dir")
        keep = False
    elif stamp.get("config") == config:
        keep = True
    else:
        for rel in stamp.get("files", []):
            path = os.path.join(out_dir, rel)
            if os.path.isfile(path) and not os.path.isabs(rel) and ".." not in rel.split("/"):
                os.remove(path)
        for rel in ("train/audio", "test/audio"):  # drop the emptied word folders
            root = os.path.join(out_dir, rel)
            for folder in sorted(os.listdir(root)) if os.path.isdir(root) else []:
                path = os.path.join(root, folder)
                if os.path.isdir(path) and not os.listdir(path):
                    os.rmdir(path)
        keep = False
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_text(os.path.join(out_dir, STAMP_NAME),
                      json.dumps({"config": config, "files": sorted(files), "complete": False}))
    return keep


def write_lists(out_dir, lists):
    for which in ("validation", "testing"):
        atomic_write_text(os.path.join(out_dir, "train", f"{which}_list.txt"),
                          "".join(f"{p}\n" for p in sorted(lists[which])))


def write_answers(out_dir, answers):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["fname", "label"])
    writer.writerows(answers)
    atomic_write_text(os.path.join(out_dir, "test", "answers.csv"), buffer.getvalue())


def readme_text(config, command, groups, lists, test_speakers, answers, noise_files):
    counts = {which: len(items) for which, items in lists.items()}
    espeak = [s for g in groups.values() for s in g if isinstance(s, Speaker)]
    voices = sorted({s.voice for s in espeak})
    variants = sorted({s.variant or "(none)" for s in espeak})
    piper = sorted({os.path.basename(m) for m in config["piper_voices"]})
    label_counts = {}
    for _, label in answers:
        label_counts[label] = label_counts.get(label, 0) + 1
    lines = [
        "# Synthetic Speech Commands data",
        "",
        "Made offline by `make_synthetic_data.py` with espeak-ng (the espeakng-loader package), in "
        "the layout of the Kaggle TensorFlow Speech Recognition Challenge. No recordings of "
        "people: every clip is a synthetic voice, so a model trained here is a smoke test of the "
        "pipeline, or a first model for new words, not a substitute for real speech.",
        "",
        f"Command: `{command}`",
        "",
        f"- seed {config['seed']}; the same command gives the same bytes",
        f"- {len(config['words'])} words: {' '.join(config['words'])}",
        f"- {sum(len(g) for g in groups.values())} training-pool speakers (training "
        f"{len(groups['training'])}, validation {len(groups['validation'])}, testing "
        f"{len(groups['testing'])}); {config['speakers_per_word']} speakers per word, "
        f"{config['repeats']} repetition(s) each",
        f"- clips: training {counts['training']}, validation {counts['validation']} "
        f"(`train/validation_list.txt`), testing {counts['testing']} (`train/testing_list.txt`); "
        "the lists split by speaker",
        f"- background noise: {', '.join(os.path.basename(f) for f in noise_files)} "
        f"({config['noise_seconds']:g} s each, `train/audio/{BACKGROUND_NOISE_DIR_NAME}/`)",
        f"- voices ({len(voices)}): {', '.join(voices)}",
        f"- variants ({len(variants)}): {', '.join(variants)}",
        f"- Piper voices: {', '.join(piper)} ({config['piper_share']:.0%} of the speakers, "
        f"length scales {list(TRAIN_LENGTH_SCALES)})" if piper else "- Piper voices: none",
        f"- a speaker is voice+variant with pitch in {list(TRAIN_PITCHES)}, pitch range in "
        f"{list(TRAIN_RANGES)}, rate in {list(TRAIN_RATES)} words/min; its id is the first 8 hex "
        "digits of the SHA-1 of that combination",
        f"- each clip: espeak-ng at 22050 Hz, silence trimmed, resampled to 16 kHz, sped up if "
        f"longer than {MAX_WORD_SECONDS} s, small pitch/rate jitter and random end punctuation "
        f"(intonation), room impulse with probability {config['reverb_probability']}, random EQ, "
        "random offset, peak level -24..-2 dBFS, a noise floor at -75..-55 dBFS, and extra noise "
        f"at 10..30 dB SNR with probability {config['noise_probability']}",
        "",
        "## Test set",
        "",
        f"`test/audio/` holds {len(answers)} unlabelled clips; `test/answers.csv` is the key "
        "(`fname,label`, labels as in a submission). Its "
        f"{len(test_speakers)} speakers use pitch {list(TEST_PITCHES)}, range "
        f"{list(TEST_RANGES)} and rate {list(TEST_RATES)}, values no training speaker has. "
        "Unknown clips are words the training set does not have "
        f"({', '.join(config['unknown_words']) or 'none'}) and training words that are not "
        f"test words ({', '.join(config['aux_words']) or 'none'}); silence clips are noise.",
        "",
        "| label | clips |",
        "| --- | ---: |",
    ]
    lines += [f"| {label} | {n} |" for label, n in sorted(label_counts.items())]
    lines += ["", "Train on it with `python train.py --data_dir <this folder>/train`.", ""]
    return "\n".join(lines)


# ---- flags --------------------------------------------------------------------------------------
def parse_words(text, what="--words"):
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        raise UserError(f"empty word list in {what}")
    bad = [w for w in words if BAD_WORD_RE.search(w)]
    if bad:
        raise UserError(f"bad word(s) in {what}: {', '.join(map(repr, bad))} (a word becomes a "
                        "folder name: no slashes, control characters, or leading '.' or '_')")
    if len(set(words)) != len(words):
        raise UserError(f"repeated words in {what}")
    reserved = [w for w in words if w.lower() in ("silence", "unknown")]
    if reserved:
        raise UserError(f"{', '.join(reserved)} in {what}: 'silence' and 'unknown' are labels")
    return words


def choose(requested, available, what):
    """'all' -> available; otherwise the comma-separated names, each of which must exist."""
    if requested.strip() == "all":
        return list(available)
    if requested.strip() == "none":
        return []
    names = [n.strip() for n in requested.split(",") if n.strip()]
    if not names:
        raise UserError(f"empty {what} list")
    lookup = {a.lower(): a for a in available}
    unknown = [n for n in names if n.lower() not in lookup]
    if unknown:
        raise UserError(f"unknown {what}(s) {', '.join(unknown)}; available: "
                        f"{', '.join(available)}")
    return list(dict.fromkeys(lookup[n.lower()] for n in names))


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out_dir", required=True, help="output folder (new, empty, or made by us)")
    p.add_argument("--words", default=",".join(V1_WORDS),
                   help="comma-separated words (default: the 30 Speech Commands v0.01 words)")
    p.add_argument("--test_words", default="auto",
                   help="words the test set labels by name; the other --words are 'unknown' there "
                        "(auto: the 10 competition words among --words, else all --words)")
    p.add_argument("--unknown_words", default=",".join(UNSEEN_WORDS),
                   help="words never in training, said as 'unknown' in the test set ('none': no "
                        "such words); any that are also in --words are dropped")
    p.add_argument("--speakers_per_word", type=int, default=150,
                   help="synthetic speakers saying each word (split 80/10/10 by the percentages)")
    p.add_argument("--max_speakers", type=int, default=450,
                   help="size of the training speaker pool the per-word speakers come from")
    p.add_argument("--repeats", type=int, default=1,
                   help="utterances of each word per speaker (<speaker>_nohash_<n>)")
    p.add_argument("--validation_percentage", type=float, default=10.0,
                   help="speakers listed in validation_list.txt")
    p.add_argument("--testing_percentage", type=float, default=10.0,
                   help="speakers listed in testing_list.txt")
    p.add_argument("--test_clips", type=int, default=600, help="clips in test/audio (0: none)")
    p.add_argument("--test_speakers", type=int, default=60,
                   help="speakers of test/audio, with pitch/range/rate values unseen in training")
    p.add_argument("--voices", default="all",
                   help="comma-separated espeak-ng English voices (en, en-us, en-029, ...) or all")
    p.add_argument("--variants", default="all",
                   help="comma-separated espeak-ng variants (m1, f2, croak, whisper, ...), all, or "
                        "none (plain voices only)")
    p.add_argument("--noise_seconds", type=float, default=60.0,
                   help="length of each background noise file")
    p.add_argument("--noise_colors", default="all", help="colours for _background_noise_")
    p.add_argument("--reverb_probability", type=float, default=0.5,
                   help="share of clips coloured by a synthetic room impulse")
    p.add_argument("--noise_probability", type=float, default=0.3,
                   help="share of clips with light noise (10-30 dB SNR) over the faint floor")
    p.add_argument("--piper_voice", action="append", default=[],
                   help="optional Piper .onnx voice (with its .onnx.json) for more speakers; "
                        "needs the piper-tts package (repeatable)")
    p.add_argument("--piper_share", type=float, default=0.25,
                   help="share of the speakers taken from the Piper voices, if any")
    p.add_argument("--seed", type=int, default=0, help="same flags and seed, same bytes")
    p.add_argument("--workers", type=int, default=0,
                   help="parallel processes (0: the number of CPU cores, at most 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def validate(args):
    for name in ("speakers_per_word", "max_speakers", "repeats", "test_speakers"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.test_clips < 0:
        raise UserError(f"--test_clips must be >= 0, got {args.test_clips}")
    if args.speakers_per_word > args.max_speakers:
        raise UserError(f"--speakers_per_word ({args.speakers_per_word}) cannot exceed "
                        f"--max_speakers ({args.max_speakers})")
    for name in ("validation_percentage", "testing_percentage"):
        if not 0 <= getattr(args, name) < 100:
            raise UserError(f"--{name} must be in [0, 100), got {getattr(args, name)}")
    for name in ("reverb_probability", "noise_probability", "piper_share"):
        if not 0 <= getattr(args, name) <= 1:
            raise UserError(f"--{name} must be in [0, 1], got {getattr(args, name)}")
    if args.noise_seconds < 1:
        raise UserError(f"--noise_seconds must be >= 1, got {args.noise_seconds}")
    if args.workers < 0:
        raise UserError(f"--workers must be >= 0, got {args.workers}")
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        raise UserError(f"--out_dir {args.out_dir} exists and is not a folder")


def main(argv=None):
    args = build_parser().parse_args(argv)
    validate(args)
    words = parse_words(args.words)
    if args.test_words == "auto":
        test_words = [w for w in COMPETITION_WORDS if w in words] or list(words)
    else:
        test_words = parse_words(args.test_words, "--test_words")
        missing = [w for w in test_words if w not in words]
        if missing:
            raise UserError(f"--test_words not in --words: {', '.join(missing)}")
    lowered = {w.lower() for w in words}
    unknown_words = ([] if args.unknown_words.strip() == "none" else
                     [w for w in parse_words(args.unknown_words, "--unknown_words")
                      if w.lower() not in lowered])
    colors = colored.parse_colors(args.noise_colors)
    piper_voices = piper_speaker_counts(args.piper_voice)

    data_path = espeak_data_path()
    voices = choose(args.voices, list(find_english_voices(data_path)), "voice")
    variants = choose(args.variants, find_variants(data_path), "variant")
    if not voices:
        raise UserError("no voices chosen")
    probe = run_in_child(probe_espeak, voices, variants, words + unknown_words)
    lost_voices = [v for v in voices if v not in probe["voices"]]
    lost_variants = [v for v in variants if v not in probe["variants"]]
    if (lost_voices and args.voices != "all") or not probe["voices"]:
        raise UserError(f"espeak-ng cannot speak with voice(s) {', '.join(lost_voices)}")
    if lost_variants and args.variants not in ("all", "none"):
        raise UserError(f"espeak-ng cannot use variant(s) {', '.join(lost_variants)}")
    silent = [w for w in probe["silent_words"] if w in words]
    if silent:
        raise UserError(f"espeak-ng says nothing for {', '.join(map(repr, silent))}")
    unknown_words = [w for w in unknown_words if w not in probe["silent_words"]]
    voices, variants = probe["voices"], probe["variants"]

    config = {
        "version": FORMAT_VERSION, "words": words, "test_words": test_words,
        "aux_words": [w for w in words if w not in test_words], "unknown_words": unknown_words,
        "speakers_per_word": args.speakers_per_word, "max_speakers": args.max_speakers,
        "repeats": args.repeats, "validation_percentage": args.validation_percentage,
        "testing_percentage": args.testing_percentage, "test_clips": args.test_clips,
        "test_speakers": args.test_speakers, "voices": voices, "variants": variants,
        "noise_seconds": args.noise_seconds, "noise_colors": colors,
        "reverb_probability": args.reverb_probability,
        "noise_probability": args.noise_probability, "seed": args.seed,
        "jobs_per_chunk": JOBS_PER_CHUNK, "espeakng_loader": espeak_version(),
        "piper_voices": piper_voices, "piper_share": args.piper_share,
    }
    started = time.time()
    train_jobs, lists, groups = plan_training(config, voices, variants)
    test_jobs, answers, test_speakers = plan_test(config, voices, variants)
    noise_dir = os.path.join("train", "audio", BACKGROUND_NOISE_DIR_NAME)
    noise_rel = [os.path.join(noise_dir, colored.noise_filename(c)) for c in colors]
    files = ([rel for job in train_jobs + test_jobs for rel, _, _ in job.clips] + noise_rel +
             ["train/validation_list.txt", "train/testing_list.txt", "test/answers.csv",
              "README.md"])
    if len(set(files)) != len(files):
        raise UserError("two clips got the same file name (a speaker id collision); "
                        "try another --seed")
    out_dir = args.out_dir
    keep = prepare_out_dir(out_dir, config, files)

    colored.write_noise_files(os.path.join(out_dir, noise_dir), colors, args.noise_seconds,
                                     -20.0, args.seed, skip_existing=keep)
    workers = args.workers or min(8, os.cpu_count() or 1)
    try:
        written = run_jobs(train_jobs + test_jobs, out_dir, keep, workers, not args.quiet)
    except RuntimeError as e:  # from a worker: espeak-ng refused a voice or said nothing
        raise UserError(str(e)) from None
    write_lists(out_dir, lists)
    if answers:
        write_answers(out_dir, answers)
    else:
        os.makedirs(os.path.join(out_dir, "test", "audio"), exist_ok=True)
        write_answers(out_dir, [])
    command = "python make_synthetic_data.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    atomic_write_text(os.path.join(out_dir, "README.md"),
                      readme_text(config, command, groups, lists, test_speakers, answers,
                                  noise_rel))
    atomic_write_text(os.path.join(out_dir, STAMP_NAME),
                      json.dumps({"config": config, "files": sorted(files), "complete": True}))
    clips = sum(len(j.clips) for j in train_jobs + test_jobs)
    print(f"{out_dir}: {sum(len(v) for v in lists.values())} training-folder clips "
          f"({', '.join(f'{k} {len(v)}' for k, v in lists.items())}), {len(answers)} test clips, "
          f"{len(colors)} noise files; wrote {written} of {clips} clips in "
          f"{time.time() - started:.1f} s with {len(voices)} voices x {len(variants)} variants"
          + (f" + {len(piper_voices)} Piper voice(s)" if piper_voices else ""))


if __name__ == "__main__":
    run_cli(main)
