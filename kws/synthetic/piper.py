"""Optional Piper (neural TTS) voices: the engine, with its noise off, and the voices' speakers.
Needs the piper-tts package, which is not installed by default; it is imported only when used."""

import importlib.util
import json
import os

import numpy as np

from kws.common import UserError

PIPER_MAX_SPEAKERS = 16  # of a multi-speaker Piper voice


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
