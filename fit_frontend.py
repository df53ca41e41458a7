"""Fit the PackFeatures front end to the published spectrograms on paired clips of training
speakers, and measure the match on speakers it was not fitted on.

    python fit_frontend.py --pack ../shared/data/speech_commands_v0.02_spectrograms.zip \
        --dev_dir ../shared/data/speech_commands_test_v0.02_dev --json logs/fit_frontend.json

Most dev clips exist both as audio and as a pack image (same speaker, word and take). The front
end is fixed up to two constants and the log offset: grey = clip(scale * log(mel power + offset)
+ bias, 0, 255) on 40 HTK-mel bands over 0-4000 Hz of 30 ms Hann frames every 10 ms. For each
log offset of --log_offsets, scale and bias are a least-squares line through the cells of the
training speakers' pairs that the line predicts unclipped (grey in 8..245); the offset with the
smallest training error wins. (JPEG smooths what it keeps, so the line comes out a few per cent
flatter than the one the images were made with: 8.85 for 9.0 on the test's tone pack.)
Speakers are split as make real splits them (kws.folders.real_split), so the held-out
speakers' clips never shape the front end. Reported per set: correlation, RMS of
the grey-level residual, its median and 90th percentile per clip, and the JPEG noise floor (the
same RMS between our features and our features saved as JPEG quality 75, as the pack was).
The constants the models use are kws/pack.py's GREY_SCALE, GREY_OFFSET and LOG_OFFSET: the run
prints how far the fitted ones are from them.
"""

import argparse
import io
import os

import numpy as np

from kws.audio import read_many
from kws.common import UserError, machine_description, run_cli, write_metrics
from kws.folders import real_split
from kws.pack import GREY_OFFSET, GREY_SCALE, LOG_OFFSET, paired_clips, read_pack

UNCLIPPED = (8, 245)  # grey levels where neither clipping nor the JPEG's ringing at 0 bites
JPEG_QUALITY = 75


def comma_floats(text):
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1e-7,1e-6, got {text!r}") \
            from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError("log offsets must be > 0")
    return values


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pack", default="../shared/data/speech_commands_v0.02_spectrograms.zip",
                        help="the spectrogram pack (zip, read in place)")
    parser.add_argument("--dev_dir", default="../shared/data/speech_commands_test_v0.02_dev",
                        help="the clips whose audio we have (<word>/*.wav)")
    parser.add_argument("--cache_dir", default="data/pack", help="where the decoded pack is kept")
    parser.add_argument("--log_offsets", type=comma_floats, default=[1e-7, 3e-7, 1e-6, 3e-6],
                        help="log offsets to try")
    parser.add_argument("--json", default="logs/fit_frontend.json", help="write the figures here")
    return parser


def log_mels(clips, log_offset):
    """PackFeatures' log mel power (before its grey map) of each clip, in numpy."""
    from kws.frontend import FrontEnd
    from kws.layers import PackFeatures

    fe = FrontEnd(PackFeatures(log_offset=log_offset).stream_constants())
    starts = fe.frame_starts()
    return np.stack([fe.log_mel(np.stack([c[s:s + fe.window] for s in starts])) for c in clips])


def fit_line(log_mel, grey, rounds=4):
    """Least squares grey ~ scale * log_mel + bias over the cells the line itself predicts to be
    unclipped (choosing cells by their pack grey level would choose by its JPEG noise too, which
    flattens the line); the first round chooses by the grey level."""
    cells = (grey > UNCLIPPED[0]) & (grey < UNCLIPPED[1])
    for _ in range(rounds):
        if cells.sum() < 100:
            raise UserError("too few paired cells to fit the front end")
        scale, bias = np.polyfit(log_mel[cells], grey[cells], 1)
        predicted = scale * log_mel + bias
        cells = (predicted > UNCLIPPED[0]) & (predicted < UNCLIPPED[1])
    return float(scale), float(bias)


def grey_levels(log_mel, scale, bias):
    return np.clip(scale * log_mel + bias, 0, 255)


def jpeg_round_trip(images):
    from PIL import Image

    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(np.round(image).astype(np.uint8)).save(buffer, "JPEG",
                                                               quality=JPEG_QUALITY)
        out.append(np.asarray(Image.open(io.BytesIO(buffer.getvalue())), np.float64))
    return np.stack(out)


def match(predicted, grey):
    """The figures of predicted grey levels against the pack's."""
    residual = grey - predicted
    per_clip = np.sqrt((residual ** 2).mean(axis=(1, 2)))
    return {"clips": int(len(grey)),
            "correlation": float(np.corrcoef(predicted.ravel(), grey.ravel())[0, 1]),
            "rms": float(np.sqrt((residual ** 2).mean())),
            "per_clip_rms_median": float(np.median(per_clip)),
            "per_clip_rms_p90": float(np.percentile(per_clip, 90)),
            "clips_over_10": float((per_clip > 10).mean()),
            "rms_of_clips_under_10": float(np.sqrt((residual[per_clip <= 10] ** 2).mean()))}


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not os.path.isdir(args.dev_dir):
        raise UserError(f"dev clips not found: {args.dev_dir}")
    pack = read_pack(args.pack, args.cache_dir)
    pairs = paired_clips(pack, args.dev_dir)
    if not pairs:
        raise UserError(f"no image of {args.pack} has its audio in {args.dev_dir}")
    clips, kept = read_many([path for _, path in pairs])
    pairs = [pairs[i] for i in kept]
    paths = [path for _, path in pairs]
    sets = np.array([real_split(os.path.basename(p)) for p in paths])
    grey = pack.images[[i for i, _ in pairs]].astype(np.float64)
    train = sets == "training"
    if not train.any():
        raise UserError("no paired clip of a training speaker")
    best = None
    for offset in args.log_offsets:
        logs = log_mels(clips, offset)
        scale, bias = fit_line(logs[train], grey[train])
        fitted = match(grey_levels(logs[train], scale, bias), grey[train])
        print(f"log offset {offset:g}: scale {scale:.3f} bias {bias:.2f}; training rms "
              f"{fitted['rms']:.2f}", flush=True)
        if best is None or fitted["rms"] < best[0]["rms"]:
            best = (fitted, offset, scale, bias, logs)
    _, offset, scale, bias, logs = best
    record = {"machine": machine_description(), "pack": args.pack, "paired_clips": len(pairs),
              "fitted": {"log_offset": offset, "grey_scale": scale, "grey_offset": bias},
              "shipped": {"log_offset": LOG_OFFSET, "grey_scale": GREY_SCALE,
                          "grey_offset": GREY_OFFSET},
              "sets": {}}
    for name in ("training", "validation", "testing"):
        rows = sets == name
        if not rows.any():
            continue
        speakers = len({os.path.basename(p).split("_nohash_")[0].split("_")[-1]
                        for p, r in zip(paths, rows) if r})
        ours = grey_levels(logs[rows], scale, bias)
        shipped = grey_levels(log_mels(clips[rows], LOG_OFFSET), GREY_SCALE, GREY_OFFSET)
        record["sets"][name] = {"speakers": speakers, "fitted": match(ours, grey[rows]),
                                "shipped": match(shipped, grey[rows]),
                                "jpeg_noise_floor_rms": match(jpeg_round_trip(ours), ours)["rms"]}
    for name, r in record["sets"].items():
        m = r["shipped"]
        print(f"{name:<10} {r['speakers']:3d} speakers, {m['clips']:4d} clips: correlation "
              f"{m['correlation']:.4f}, rms {m['rms']:.2f} grey levels (per clip: median "
              f"{m['per_clip_rms_median']:.2f}, p90 {m['per_clip_rms_p90']:.2f}; "
              f"{m['clips_over_10']:.1%} of clips over 10, the others "
              f"{m['rms_of_clips_under_10']:.2f}); JPEG noise floor "
              f"{r['jpeg_noise_floor_rms']:.2f}")
    print(f"fitted: scale {scale:.3f}, bias {bias:.2f}, log offset {offset:g} (the models use "
          f"{GREY_SCALE}, {GREY_OFFSET}, {LOG_OFFSET:g}: kws/pack.py)")
    write_metrics(args.json, record)
    return 0


if __name__ == "__main__":
    run_cli(main)
