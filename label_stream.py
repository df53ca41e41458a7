"""Spot keywords in a long recording, standard input, or a microphone, and print them live.

    python label_stream.py --model tf_files/real/model_int8.tflite --wav long.wav --csv det.csv

Sources: `--wav FILE` (any length and any format kws.audio reads; read block by block, never
whole), `--raw -` (16 kHz mono s16le PCM on standard input, e.g.
`arecord -f S16_LE -r 16000 -c 1 -t raw` or `ffmpeg -i in.mp3 -f s16le -ar 16000 -ac 1 -`), or
`--mic` (the optional `sounddevice` package). Each detection prints as `time  word  score`;
`--csv` also writes them with the header `time_ms,label,score` (time from the start of the
audio), `--plot` draws the score traces with the detections marked, `--scores_csv` writes every
hop's probabilities. The recognizer's settings come from NAME_streaming.json beside the model
(what the recipe that made it chose), else the TF example's defaults; flags override both.
`--also_model` averages more models' probabilities with --model's (an ensemble). An empty
`--raw` stream (no microphone, a recorder that failed) is an error.
"""

import argparse
import os
import sys
import time

import numpy as np

from kws import SAMPLE_RATE
from kws.audio import stream_wav
from kws.common import UserError, atomic_path, atomic_write_text, run_cli
from kws.runtime import load_streaming_models
from kws.shipped import DEFAULT_MODEL
from kws.streaming import (
    Spotter,
    add_ensemble_arg,
    add_settings_args,
    detections_csv,
    settings_from_flags,
)

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
        import sounddevice as sd
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
    import soundfile as sf

    try:
        total = sf.info(path).duration
    except Exception:
        total = None
    bar = None
    if progress and total:
        from tqdm import tqdm

        bar = tqdm(total=round(total), unit="s", desc=os.path.basename(path), leave=False,
                   file=sys.stderr)
    for block in stream_wav(path, BLOCK):
        yield block
        if bar is not None:
            bar.update(len(block) / SAMPLE_RATE)
    if bar is not None:
        bar.close()


def scores_csv(hops, labels):
    """The text of a scores CSV: time_ms,<label>..., each hop's probabilities to 8 decimals."""
    rows = [f"{t:.0f}," + ",".join(f"{p:.8f}" for p in probs) for t, probs in hops]
    return "\n".join(["time_ms," + ",".join(labels)] + rows) + "\n"


def plot_traces(path, times, scores, labels, detections, threshold):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(8, min(24, times[-1] / 8000)), 4))
    seconds = np.asarray(times) / 1000
    for i, label in enumerate(labels):
        if not label.startswith("_"):
            ax.plot(seconds, scores[:, i], lw=0.8, label=label)
    ax.axhline(threshold, color="grey", ls="--", lw=0.8)
    for d in detections:
        ax.axvline(d.time_ms / 1000, color="black", lw=0.5, alpha=0.5)
        ax.text(d.time_ms / 1000, 1.02, d.label, rotation=90, fontsize=7, ha="center",
                va="bottom")
    ax.set_ylim(0, 1.15)
    ax.set_xlabel("seconds")
    ax.set_ylabel("smoothed score")
    ax.legend(ncol=5, fontsize=7, loc="upper right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=".tflite, .pb or .keras (default: the shipped model, models/)")
    add_ensemble_arg(parser)
    parser.add_argument("--labels", default="", help="labels file (default: beside the model)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav", help="a recording of any length")
    source.add_argument("--raw", help="'-': 16 kHz mono s16le PCM on standard input")
    source.add_argument("--mic", action="store_true", help="the default microphone")
    parser.add_argument("--rate", type=int, default=SAMPLE_RATE,
                        help="sample rate of --raw (only 16000 is accepted)")
    parser.add_argument("--seconds", type=float, default=0, help="--mic: stop after this long")
    parser.add_argument("--csv", default="", help="write the detections here")
    parser.add_argument("--plot", default="", help="PNG of the score traces and detections")
    parser.add_argument("--scores_csv", default="",
                        help="write every hop's model probabilities (time_ms,<label>...) here")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quiet", action="store_true", help="no live lines, no progress bar")
    add_settings_args(parser)
    args = parser.parse_args(argv)
    if args.raw is not None and args.raw != "-":
        raise UserError("--raw takes '-' (standard input); use --wav for a file")
    if args.raw is not None and args.rate != SAMPLE_RATE:
        raise UserError(f"--raw must be {SAMPLE_RATE} Hz mono s16le, got --rate {args.rate}: "
                        f"resample it first (ffmpeg ... -ar {SAMPLE_RATE} -ac 1 -f s16le -)")
    settings = settings_from_flags(args)
    model, labels = load_streaming_models([args.model] + args.also_model, args.labels or None,
                                          args.threads, settings.stride_ms)
    spotter = Spotter(model, labels, settings)
    if args.wav:
        blocks = file_blocks(args.wav, progress=not args.quiet and sys.stderr.isatty())
    elif args.raw:
        blocks = raw_blocks(sys.stdin.buffer)
    else:
        blocks = mic_blocks(args.seconds)
    trace_t, trace_p, hops, found = [], [], [], []
    keep = bool(args.plot)

    def on_scores(time_ms, probs, smoothed):
        if keep:
            trace_t.append(time_ms)
            trace_p.append(probs if smoothed is None else smoothed)
        if args.scores_csv:
            hops.append((time_ms, np.array(probs, np.float32)))

    try:
        for block in blocks:
            for d in spotter.feed(block, on_scores):
                found.append(d)
                if not args.quiet:
                    print(f"{d.time_ms / 1000:9.2f} s  {d.label:<10} {d.score:.3f}", flush=True)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    heard = spotter.windows.samples_seen / SAMPLE_RATE
    if args.raw and not heard:
        raise UserError("no audio on standard input: is the recorder running and is there a "
                        "microphone? (arecord -l lists them)")
    if args.csv:
        atomic_write_text(args.csv, detections_csv(found))
    if args.scores_csv:
        atomic_write_text(args.scores_csv, scores_csv(hops, labels))
    if args.plot and trace_t:
        plot_traces(args.plot, trace_t, np.asarray(trace_p), labels, found,
                    settings.detection_threshold)
    print(f"{len(found)} detections in {heard:.1f} s of audio"
          + (f"; wrote {args.csv}" if args.csv else "") + (f", {args.plot}" if args.plot else ""),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
