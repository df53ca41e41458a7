"""espeak-ng in this process through ctypes (the library and voices of the espeakng-loader
package), and what it can say: its English voices, its voice variants, a probe of both."""

import ctypes
import os
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from kws.synthetic.render import audible

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
    use it in forked child processes that never inherit an initialised library (see
    `kws.synthetic.jobs.run_jobs`), each saying a fixed list of utterances in a fixed order: that
    makes every byte reproducible.
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
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int,
                                              ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
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

    def phonemes(self, text):
        """espeak-ng's phoneme mnemonics of text in the current voice (e.g. "no" -> "n'oU")."""
        remaining = ctypes.c_char_p(text.encode("utf-8"))
        parts = []
        while remaining.value:
            parts.append(self.lib.espeak_TextToPhonemes(ctypes.byref(remaining),
                                                        ESPEAK_CHARS_UTF8, 0).decode())
        return " ".join(parts)

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
