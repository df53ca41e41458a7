"""Label a folder of clips one at a time with a frozen model, as on a Raspberry Pi: a Kaggle CSV.

    python make_submission_on_rpi.py --frozen_graph tf_files/frozen_int8.tflite \
        --test_data data/test/audio --submission_fn rpi_submission.csv

Needs only numpy and ai_edge_litert for a .tflite model (tensorflow only for a .pb, imported when
used): WAV files are read by a small reader in this file (8/16/24/32-bit PCM and 32/64-bit float,
any channel count mixed to mono, other rates linearly resampled to 16 kHz, padded or cropped to one
second). The labels file is found beside the model (NAME_labels.txt, then labels.txt) unless
--labels is given. Writes `fname,label` rows (labels `silence`/`unknown` without underscores) in
the order of the sorted file names (an all-words model's labels folded into the 12 classes, as
make_submission.py does); fname is the path relative to --test_data (the bare file name
for Kaggle's flat test/audio). An unreadable clip is warned about and labelled `silence`, so the
CSV still has a row for every file. Prints the per-clip latency (median, p90), the total time and
the model size, and the accuracy when the folder is laid out as <label>/*.wav.
"""

import argparse
import csv
import os
import sys
import time

import numpy as np

from common import UserError, atomic_path  # stdlib only: safe on a bare Pi
from kws.labels import (  # numpy only
    COMPETITION_LABELS,
    SILENCE_LABEL,
    UNKNOWN_MODES,
    competition_label,
    is_competition_labels,
    read_labels,
    submission_label,
    to_12_classes,
    truth_label,
)

SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
BACKGROUND_NOISE_DIR_NAME = "_background_noise_"
PB_SAMPLES = "decoded_sample_data:0"
PB_RATE = "decoded_sample_data:1"
PB_OUTPUT = "labels_softmax:0"
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


class WavError(ValueError):
    """A file that is not a readable WAV file. The message names the file."""


# ---- WAV reading (numpy only) -------------------------------------------------------------
def _parse_fmt(body, name):
    if len(body) < 16:
        raise WavError(f"{name}: fmt chunk too short")
    tag = int.from_bytes(body[0:2], "little")
    channels = int.from_bytes(body[2:4], "little")
    rate = int.from_bytes(body[4:8], "little")
    bits = int.from_bytes(body[14:16], "little")
    if tag == _EXTENSIBLE and len(body) >= 26:
        tag = int.from_bytes(body[24:26], "little")  # the sub-format GUID starts with the tag
    if not (1 <= channels <= 64) or not (100 <= rate <= 768000):
        raise WavError(f"{name}: implausible header ({channels} channels at {rate} Hz)")
    if (tag, bits) not in {(_PCM, 8), (_PCM, 16), (_PCM, 24), (_PCM, 32), (_FLOAT, 32),
                           (_FLOAT, 64)}:
        raise WavError(f"{name}: unsupported WAV encoding (format {tag}, {bits} bits)")
    return tag, channels, rate, bits


def _chunks(data, name):
    """(fmt chunk body, data chunk body) of a RIFF/WAVE file."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError(f"{name}: not a WAV file")
    fmt = pcm = None
    pos = 12
    while pos + 8 <= len(data) and (fmt is None or pcm is None):
        chunk_id, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        body = data[pos + 8:pos + 8 + size]
        if chunk_id == b"fmt ":
            fmt = body
        elif chunk_id == b"data":
            if len(body) < size and size not in (0, 0xFFFFFFFF):  # 0/-1: streamed, size unknown
                raise WavError(f"{name}: truncated (data chunk says {size} bytes, file holds "
                               f"{len(body)})")
            pcm = body if size not in (0, 0xFFFFFFFF) else data[pos + 8:]
        pos += 8 + size + (size & 1)
    if fmt is None or pcm is None:
        raise WavError(f"{name}: no {'fmt' if fmt is None else 'data'} chunk")
    return fmt, pcm


def _samples(pcm, tag, channels, bits):
    """Interleaved frames -> float64 [frames, channels] in [-1, 1]."""
    width = bits // 8
    frames = len(pcm) // (width * channels)
    raw = np.frombuffer(pcm, np.uint8, frames * width * channels)
    if tag == _FLOAT:
        x = raw.view("<f4" if bits == 32 else "<f8").astype(np.float64)
    elif bits == 8:
        x = (raw.astype(np.float64) - 128.0) / 128.0
    elif bits == 24:
        b = raw.reshape(-1, 3).astype(np.int32)
        x = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8) / float(1 << 23)
    else:
        x = raw.view("<i2" if bits == 16 else "<i4") / float(1 << (bits - 1))
    return x.reshape(frames, channels)


def resample_linear(samples, rate, target=SAMPLE_RATE):
    if rate == target or len(samples) == 0:
        return samples
    count = int(round(len(samples) * target / rate))
    return np.interp(np.arange(count) * (rate / target), np.arange(len(samples)), samples)


def decode_wav(data, name="<bytes>", num_samples=CLIP_SAMPLES):
    """The bytes of a WAV file -> float32 mono [num_samples] at 16 kHz in [-1, 1]."""
    fmt, pcm = _chunks(data, name)
    tag, channels, rate, bits = _parse_fmt(fmt, name)
    frames = _samples(pcm, tag, channels, bits)
    if len(frames) == 0:
        raise WavError(f"{name}: empty audio (0 samples)")
    mono = frames.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise WavError(f"{name}: non-finite samples")
    mono = np.clip(resample_linear(mono, rate), -1.0, 1.0).astype(np.float32)
    if len(mono) >= num_samples:
        return mono[:num_samples]
    return np.pad(mono, (0, num_samples - len(mono)))


def read_wav(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise WavError(f"{path}: {e.strerror or e}") from None
    if not data:
        raise WavError(f"{path}: empty file")
    return decode_wav(data, path)


# ---- models ---------------------------------------------------------------------------------
class TFLiteModel:
    """A .tflite file run by LiteRT: float32 [1, 16000] in, probabilities [1, n] out."""

    def __init__(self, path, num_threads=1):
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_path=path, num_threads=num_threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise UserError(f"{path}: not a TFLite model ({str(e).splitlines()[0]})") from None
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if (len(inputs) != 1 or list(inputs[0]["shape"]) != [1, CLIP_SAMPLES]
                or inputs[0]["dtype"] != np.float32 or len(outputs) != 1):
            raise UserError(f"{path}: expected one float32 input [1, {CLIP_SAMPLES}] and one "
                            "output (a model written by freeze_graph.py)")
        self.input, self.output = inputs[0]["index"], outputs[0]["index"]
        self.num_outputs = int(outputs[0]["shape"][-1])

    def predict(self, samples):
        self.interpreter.set_tensor(self.input, samples.reshape(1, CLIP_SAMPLES))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output).reshape(-1)


class FrozenGraphModel:
    """A frozen .pb with the tutorial's interface, fed float samples at decoded_sample_data:0."""

    def __init__(self, path, num_threads=1):
        import tensorflow as tf
        from google.protobuf.message import DecodeError

        graph_def = tf.compat.v1.GraphDef()
        try:
            with open(path, "rb") as f:
                graph_def.ParseFromString(f.read())
        except (DecodeError, RuntimeWarning, ValueError) as e:
            raise UserError(f"{path}: not a TensorFlow GraphDef ({e})") from None
        names = {n.name for n in graph_def.node}
        missing = [t for t in (PB_SAMPLES, PB_OUTPUT) if t.split(":")[0] not in names]
        if missing:
            raise UserError(f"{path}: not a frozen speech graph (no {', '.join(missing)})")
        graph = tf.Graph()
        try:
            with graph.as_default():
                tf.import_graph_def(graph_def, name="")
        except (ValueError, tf.errors.OpError) as e:
            raise UserError(f"{path}: cannot import the graph ({str(e).splitlines()[0]})") \
                from None
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=num_threads,
                                          inter_op_parallelism_threads=num_threads)
        self.session = tf.compat.v1.Session(graph=graph, config=config)
        self.num_outputs = int(graph.get_tensor_by_name(PB_OUTPUT).shape[-1])

    def predict(self, samples):
        feed = {PB_SAMPLES: samples.reshape(CLIP_SAMPLES, 1), PB_RATE: SAMPLE_RATE}
        return self.session.run(PB_OUTPUT, feed).reshape(-1)


def labels_path_for(model_path):
    """NAME_labels.txt beside NAME.pb / NAME.tflite (NAME_int8.tflite shares it), or labels.txt."""
    stem = os.path.splitext(model_path)[0]
    candidates = [stem + "_labels.txt"]
    if stem.endswith("_int8"):
        candidates.append(stem[:-len("_int8")] + "_labels.txt")
    candidates.append(os.path.join(os.path.dirname(model_path), "labels.txt"))
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise UserError(f"no labels file beside {model_path} (looked for "
                    f"{', '.join(os.path.basename(c) for c in candidates)}); pass --labels")


def load_model(path, labels_path=None, num_threads=1):
    """(model with .predict(samples [16000]) -> probabilities [n], labels) for a .pb or .tflite."""
    if not os.path.isfile(path):
        raise UserError(f"model not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".tflite":
        model = TFLiteModel(path, num_threads)
    elif ext == ".pb":
        model = FrozenGraphModel(path, num_threads)
    else:
        raise UserError(f"{path}: expected a .pb or .tflite file")
    labels = read_labels(labels_path or labels_path_for(path))
    if len(labels) != model.num_outputs:
        raise UserError(f"{path} has {model.num_outputs} outputs but its labels file has "
                        f"{len(labels)} labels")
    return model, labels


# ---- the test folder ------------------------------------------------------------------------
def _clip_name(name):
    """False for hidden files (macOS `._x.wav`, a killed writer's `.x.part.wav`) and names that
    are not UTF-8 (they cannot go into the CSV), as input_data does."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not name.startswith(".") and name != "__MACOSX"


def _wavs_in(folder, ignored):
    names = sorted(f for f in os.listdir(folder)
                   if f.lower().endswith(".wav") and os.path.isfile(os.path.join(folder, f)))
    ignored.extend(os.path.join(folder, f) for f in names if not _clip_name(f))
    return [f for f in names if _clip_name(f)]


def list_clips(folder):
    """(paths, folder labels or None) of a flat folder of WAVs or a `<label>/*.wav` tree."""
    if not os.path.isdir(folder):
        raise UserError(f"test folder not found: {folder}")
    ignored = []
    flat = _wavs_in(folder, ignored)
    paths, labels = [os.path.join(folder, f) for f in flat], None
    if not flat:
        labels = []
        for name in sorted(os.listdir(folder)):
            sub = os.path.join(folder, name)
            if not os.path.isdir(sub) or name == BACKGROUND_NOISE_DIR_NAME:
                continue
            if not _clip_name(name):
                ignored.append(sub)
                continue
            for f in _wavs_in(sub, ignored):
                paths.append(os.path.join(sub, f))
                labels.append(name)
    if ignored:
        shown = ", ".join(ascii(p)[1:-1] for p in ignored[:3])
        print(f"warning: ignored {len(ignored)} hidden, macOS-metadata or non-UTF-8-named files "
              f"or folders: {shown}", file=sys.stderr)
    if not paths:
        raise UserError(f"no .wav files in {folder}")
    return paths, labels


def label_clips(model, labels, paths, progress_every=5000, unknown_mode="sum"):
    """(predicted labels or None for unreadable clips, per-clip latencies in s, errors).

    A model of other labels than the 12 competition classes (an all-words model) is folded to
    them as make_submission.py does: every other word adds to `_unknown_`."""
    twelve = is_competition_labels(labels)
    predictions, latencies, errors = [], [], []
    start = time.perf_counter()
    for i, path in enumerate(paths):
        try:
            samples = read_wav(path)
        except WavError as e:
            errors.append(e)
            predictions.append(None)
            continue
        t0 = time.perf_counter()
        probs = model.predict(samples)
        latencies.append(time.perf_counter() - t0)
        if twelve:
            predictions.append(labels[int(np.argmax(probs))])
        else:
            folded = to_12_classes(probs.reshape(1, -1), labels, unknown_mode)[0]
            predictions.append(COMPETITION_LABELS[int(np.argmax(folded))])
        if progress_every and (i + 1) % progress_every == 0:
            elapsed = time.perf_counter() - start
            print(f"{i + 1}/{len(paths)} clips, {elapsed:.0f} s, "
                  f"eta {elapsed / (i + 1) * (len(paths) - i - 1):.0f} s", file=sys.stderr)
    return predictions, np.asarray(latencies), errors


def write_submission(path, fnames, predictions):
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["fname", "label"])
            for fname, label in zip(fnames, predictions):
                writer.writerow([fname, submission_label(label or SILENCE_LABEL)])


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frozen_graph", default="tf_files/frozen.pb",
                   help="a .pb or .tflite written by freeze_graph.py")
    p.add_argument("--test_data", default="data/test/audio",
                   help="folder of WAV clips (flat, or <label>/*.wav to also get the accuracy)")
    p.add_argument("--submission_fn", default="rpi_submission.csv", help="the CSV to write")
    p.add_argument("--labels", default="",
                   help="labels file (default: NAME_labels.txt or labels.txt beside the model)")
    p.add_argument("--unknown_mode", choices=UNKNOWN_MODES, default="sum",
                   help="all-words models: how other words combine into unknown")
    p.add_argument("--num_threads", type=int, default=1,
                   help="interpreter / TF threads (1 = the single-core latency the prize measured)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.num_threads < 1:
        raise UserError(f"--num_threads must be >= 1, got {args.num_threads}")
    paths, folder_labels = list_clips(args.test_data)
    model, labels = load_model(args.frozen_graph, args.labels or None, args.num_threads)
    start = time.perf_counter()
    predictions, latencies, errors = label_clips(model, labels, paths,
                                                 unknown_mode=args.unknown_mode)
    total = time.perf_counter() - start
    fnames = [os.path.relpath(p, args.test_data).replace(os.sep, "/") for p in paths]
    write_submission(args.submission_fn, fnames, predictions)
    if errors:
        first = "; ".join(str(e) for e in errors[:3])
        print(f"warning: {len(errors)} unreadable clips labelled silence: {first}"
              + (f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""), file=sys.stderr)
    print(f"wrote {args.submission_fn}: {len(paths)} rows")
    if len(latencies):
        print(f"latency per clip: median {np.median(latencies) * 1e3:.2f} ms, "
              f"p90 {np.percentile(latencies, 90) * 1e3:.2f} ms (model only, batch 1, "
              f"{args.num_threads} thread{'s' if args.num_threads > 1 else ''})")
    print(f"total {total:.1f} s for {len(paths)} clips (read + model); "
          f"model {os.path.getsize(args.frozen_graph):,} bytes")
    if folder_labels is not None:
        twelve = is_competition_labels(labels)
        scored = [(p or SILENCE_LABEL, truth_label(t, labels) if twelve else competition_label(t))
                  for p, t in zip(predictions, folder_labels)]
        correct = sum(p == t for p, t in scored)
        print(f"accuracy {correct / len(scored):.4f} ({correct}/{len(scored)}, unreadable clips "
              "count as silence)")
    return 0


def run(argv=None):
    """One-line errors and exit code 2, without common.run_cli (it imports audio's libraries)."""
    try:
        sys.exit(main(argv) or 0)
    except (UserError, WavError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run()
