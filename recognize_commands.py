"""The streaming recognizer, timed: how much CPU a second of audio costs, and each hop's latency.

    python recognize_commands.py --model tf_files/real/model_int8.tflite --wav long.wav

The recognizer itself lives in kws/streaming.py (`Spotter`: a one-second ring buffer that runs
the model every --stride_ms; `Recognizer`: the TF speech_commands example's RecognizeCommands
with the same parameters, re-armed so a word said twice in a row fires twice). This command
runs it over a recording (or --seconds of generated noise) as label_stream.py would, timing each
hop (kws/timing.py), and reports the real-time factor (process CPU seconds per second of audio,
start-up and model loading included) and the per-hop latency (median, p99). Needs numpy and the
model's runtime only.
"""

import argparse
import time

import numpy as np

START_CPU = time.process_time()  # before the imports below: start-up counts

from kws import SAMPLE_RATE  # noqa: E402
from kws.audio import stream_wav  # noqa: E402
from kws.common import UserError, run_cli, write_metrics  # noqa: E402
from kws.runtime import load_streaming_model  # noqa: E402
from kws.streaming import Spotter, add_settings_args, settings_from_flags  # noqa: E402
from kws.timing import TimedModel, noise_blocks  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help=".tflite, .pb or .keras")
    parser.add_argument("--labels", default="", help="labels file (default: beside the model)")
    parser.add_argument("--wav", default="", help="a recording (default: --seconds of noise)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the noise")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--metrics_json", default="", help="write the figures as JSON")
    add_settings_args(parser)
    args = parser.parse_args(argv)
    if not args.wav and not args.seconds >= 1:  # also refuses nan
        raise UserError("--seconds must be >= 1")
    settings = settings_from_flags(args)
    model, labels = load_streaming_model(args.model, args.labels or None, args.threads,
                                         settings.stride_ms)
    timed = TimedModel(model)
    spotter = Spotter(timed, labels, settings)
    detections = 0
    for block in (stream_wav(args.wav, SAMPLE_RATE // 10) if args.wav else
                  noise_blocks(args.seconds)):
        detections += len(spotter.feed(block))
    cpu = time.process_time() - START_CPU
    audio_s = spotter.windows.samples_seen / SAMPLE_RATE
    hops = np.asarray(timed.seconds) * 1e3
    if not len(hops):
        raise UserError(f"{args.wav}: shorter than one second, no window to time")
    figures = {"model": args.model, "audio_seconds": audio_s, "hops": len(hops),
               "stride_ms": settings.stride_ms, "cpu_seconds": cpu,
               "real_time_factor": cpu / max(audio_s, 1e-9),
               "hop_latency_ms_median": float(np.median(hops)) if len(hops) else None,
               "hop_latency_ms_p99": float(np.percentile(hops, 99)) if len(hops) else None,
               "detections": detections, "threads": args.threads}
    write_metrics(args.metrics_json, figures)
    print(f"{audio_s:.1f} s of audio, {len(hops)} hops of {settings.stride_ms:g} ms: real-time "
          f"factor {figures['real_time_factor']:.4f} ({cpu:.2f} CPU s, start-up included); hop "
          f"latency median {figures['hop_latency_ms_median']:.3f} ms, p99 "
          f"{figures['hop_latency_ms_p99']:.3f} ms; {detections} detections")
    return 0


if __name__ == "__main__":
    run_cli(main)
