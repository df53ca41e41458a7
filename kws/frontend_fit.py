"""Fitting the PackFeatures front end to the published spectrograms (fit_frontend.py is the
command line): for each log offset a least-squares line from log mel power to the pack's grey
levels on the training speakers' pairs, the best offset's figures per set, and the JPEG noise
floor. TensorFlow-backed: PackFeatures is a Keras layer."""

import io
import os

import numpy as np
from PIL import Image

from kws.common import UserError, machine_description
from kws.frontend import FrontEnd
from kws.layers import PackFeatures
from kws.pack import GREY_OFFSET, GREY_SCALE, LOG_OFFSET

UNCLIPPED = (8, 245)  # grey levels where neither clipping nor the JPEG's ringing at 0 bites
JPEG_QUALITY = 75


def log_mels(clips, log_offset):
    """PackFeatures' log mel power (before its grey map) of each clip, in numpy."""
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


def best_fit(data, log_offsets):
    """(log offset, scale, bias, log mels) whose line fits the training speakers' pairs best."""
    train = data.sets == "training"
    best = None
    for offset in log_offsets:
        logs = log_mels(data.clips, offset)
        scale, bias = fit_line(logs[train], data.grey[train])
        fitted = match(grey_levels(logs[train], scale, bias), data.grey[train])
        print(f"log offset {offset:g}: scale {scale:.3f} bias {bias:.2f}; training rms "
              f"{fitted['rms']:.2f}", flush=True)
        if best is None or fitted["rms"] < best[0]["rms"]:
            best = (fitted, offset, scale, bias, logs)
    return best[1:]


def set_figures(data, rows, logs, scale, bias):
    """One set's figures: its speakers, our fitted and the shipped constants against the pack,
    and the JPEG noise floor of our features."""
    speakers = len({os.path.basename(p).split("_nohash_")[0].split("_")[-1]
                    for p, r in zip(data.paths, rows) if r})
    ours = grey_levels(logs[rows], scale, bias)
    shipped = grey_levels(log_mels(data.clips[rows], LOG_OFFSET), GREY_SCALE, GREY_OFFSET)
    return {"speakers": speakers, "fitted": match(ours, data.grey[rows]),
            "shipped": match(shipped, data.grey[rows]),
            "jpeg_noise_floor_rms": match(jpeg_round_trip(ours), ours)["rms"]}


def print_report(record):
    for name, r in record["sets"].items():
        m = r["shipped"]
        print(f"{name:<10} {r['speakers']:3d} speakers, {m['clips']:4d} clips: correlation "
              f"{m['correlation']:.4f}, rms {m['rms']:.2f} grey levels (per clip: median "
              f"{m['per_clip_rms_median']:.2f}, p90 {m['per_clip_rms_p90']:.2f}; "
              f"{m['clips_over_10']:.1%} of clips over 10, the others "
              f"{m['rms_of_clips_under_10']:.2f}); JPEG noise floor "
              f"{r['jpeg_noise_floor_rms']:.2f}")
    fitted = record["fitted"]
    print(f"fitted: scale {fitted['grey_scale']:.3f}, bias {fitted['grey_offset']:.2f}, log "
          f"offset {fitted['log_offset']:g} (the models use {GREY_SCALE}, {GREY_OFFSET}, "
          f"{LOG_OFFSET:g}: kws/pack.py)")


def fit_front_end(data, log_offsets, pack_path):
    """Fit on the paired audio (kws.pack_data.paired_audio), print the figures; return the record
    that fit_frontend.py writes as JSON."""
    offset, scale, bias, logs = best_fit(data, log_offsets)
    record = {"machine": machine_description(), "pack": pack_path,
              "paired_clips": len(data.paths),
              "fitted": {"log_offset": offset, "grey_scale": scale, "grey_offset": bias},
              "shipped": {"log_offset": LOG_OFFSET, "grey_scale": GREY_SCALE,
                          "grey_offset": GREY_OFFSET},
              "sets": {}}
    for name in ("training", "validation", "testing"):
        rows = data.sets == name
        if rows.any():
            record["sets"][name] = set_figures(data, rows, logs, scale, bias)
    print_report(record)
    return record
