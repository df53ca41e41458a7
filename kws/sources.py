"""Where a live stream's audio comes from, as float32 blocks at 16 kHz: a recording of any
length (read block by block, never whole), s16le PCM on a binary stream (standard input), or a
microphone (the optional sounddevice package). Light enough for the Pi (label_stream.py)."""

import os
import sys
import time

import numpy as np
import soundfile as sf
from tqdm import tqdm

from kws import SAMPLE_RATE
from kws.audio import stream_wav
from kws.common import UserError

BLOCK = SAMPLE_RATE // 10  # 100 ms blocks from any source


def raw_blocks(stream, block=BLOCK):
    """float32 blocks of s16le PCM from a binary stream; a trailing odd byte is dropped."""
    carry = b""
    while True:
        data = stream.read(block * 2)
        if not data:
            break
        data = carry + data
        usable = len(data) // 2 * 2
        carry = data[usable:]
        if usable:
            yield np.frombuffer(data[:usable], "<i2").astype(np.float32) / 32768.0
    if carry:
        print("warning: the stream ended mid-sample; the last byte was dropped",
              file=sys.stderr)


def mic_blocks(seconds=0.0, block=BLOCK):
    try:
        import sounddevice as sd  # optional: only --mic needs it (and PortAudio)
    except ImportError:
        raise UserError("--mic needs the sounddevice package: pip install sounddevice "
                        "(and the PortAudio library: apt install libportaudio2)") from None
    try:
        stream = sd.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="float32",
                                blocksize=block)
    except Exception as e:  # PortAudioError: no device, busy device, unsupported rate
        raise UserError(f"no usable microphone: {e}") from None
    end = time.monotonic() + seconds if seconds else None
    with stream:
        while end is None or time.monotonic() < end:
            data, _ = stream.read(block)
            yield data[:, 0].copy()


def file_blocks(path, progress):
    """Blocks of a file, with a progress bar on a terminal."""
    try:
        total = sf.info(path).duration
    except Exception:
        total = None
    bar = None
    if progress and total:
        bar = tqdm(total=round(total), unit="s", desc=os.path.basename(path), leave=False,
                   file=sys.stderr)
    for block in stream_wav(path, BLOCK):
        yield block
        if bar is not None:
            bar.update(len(block) / SAMPLE_RATE)
    if bar is not None:
        bar.close()
