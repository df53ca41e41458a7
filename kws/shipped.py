"""The pretrained model that ships in the repository (models/), so a fresh clone spots words
without training, and how a recipe ships a better one in its place.

    from kws.shipped import DEFAULT_MODEL      # models/edge_int8.tflite
    ship("tf_files/real", results)   # results: a run's results.json; ships if validation wins

models/ holds the int8 edge model (edge_int8.tflite), its labels (edge_labels.txt), the two files
that let a stream reuse front-end frames from hop to hop (edge_stream_body_int8.tflite,
edge_stream.npz), the streaming settings its recipe chose (edge_streaming.json), and a model card
(edge_card.json, rendered as README.md). Standard library only.
"""

import datetime
import json
import os
import shutil
import subprocess

from kws.common import REPO, UserError, atomic_path, atomic_write_text, machine_description

MODELS_DIR = os.path.join(REPO, "models")
NAME = "edge"
DEFAULT_MODEL = os.path.join(MODELS_DIR, f"{NAME}_int8.tflite")
CARD = f"{NAME}_card.json"
# what freeze_graph.py writes for NAME=model -> the shipped name
FILES = {
    "model_int8.tflite": f"{NAME}_int8.tflite",
    "labels.txt": f"{NAME}_labels.txt",
    "model_stream_body_int8.tflite": f"{NAME}_stream_body_int8.tflite",
    "model_stream.npz": f"{NAME}_stream.npz",
    "model_streaming.json": f"{NAME}_streaming.json",
}
SIZE_LIMIT = 1_000_000  # bytes of the int8 model


def read_card(models_dir=MODELS_DIR):
    """The shipped model's card (a dict), or None when nothing is shipped there."""
    path = os.path.join(models_dir, CARD)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a model card ({e})") from None


AUDIO_DATA = ("real.py: Speech Commands v0.02 test clips split by speaker (training speakers "
              "only), the training speakers of 1,770 extra Speech Commands speakers, the v0.01 "
              "sample's training speakers, other speech and running speech as unknown words "
              "(held-out groups and speakers left out), four of the six spoken-digit speakers "
              "as unknown words, synthetic espeak-ng speech, real background noise")
PACK_DATA = (" + the published spectrograms of Speech Commands v0.02 (train.py --pack: 2,298 "
             "more speakers; the validation and held-out speakers' images left out)")


def card_from_results(results, tf_dir, command="make real", commit=None, when=None,
                      data=AUDIO_DATA):
    """A model card of the edge model a `make real` run froze into tf_dir."""
    int8 = results["edge_int8"]["int8"]
    edge = results["models"][results.get("frozen", "edge")]  # the model frozen into tf_dir
    card = {
        "model": f"{NAME}_int8.tflite",
        "labels": f"{NAME}_labels.txt",
        "size_bytes": os.path.getsize(os.path.join(tf_dir, "model_int8.tflite")),
        "data": data,
        "command": command,
        "commit": commit or git_commit(),
        "date": when or datetime.date.today().isoformat(),
        "cpu": machine_description(),
        "epochs": edge.get("epochs"),
        "train_wall_minutes": edge.get("train_wall_minutes"),
        "held_out_speakers": results["held_out_speakers"],
        "held_out_clips": results["held_out_clips"],
        "accuracy_int8": int8["accuracy"],
        "recall_int8": int8["recall"],
        "validation": results.get("validation"),
        "latency_ms": int8.get("latency_ms"),
    }
    stream = results.get("streaming", {}).get("ours")
    if stream:
        card["streaming_held_out"] = {
            "detection_rate": stream["detection_rate"],
            "false_accepts_per_hour": stream["false_accepts_per_hour"],
            "settings": results["streaming"].get("settings")}
    return card


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def ship(tf_dir, results, models_dir=MODELS_DIR, force=False, **card_fields):
    """Copy the edge model of tf_dir (and a card from its results) into models_dir when its
    validation accuracy beats the shipped one's on the same validation split, or the shipped
    one was chosen on another split (or force). Never by the held-out figure: choosing by it
    inflates it. Returns (shipped, reason)."""
    missing = [f for f in FILES if not os.path.isfile(os.path.join(tf_dir, f))]
    if missing:
        raise UserError(f"{tf_dir}: cannot ship, missing {', '.join(missing)}")
    card = card_from_results(results, tf_dir, **card_fields)
    if card["size_bytes"] >= SIZE_LIMIT:
        return False, f"not shipped: {card['size_bytes']:,} bytes, over {SIZE_LIMIT:,}"
    shipped = read_card(models_dir)
    new, old = card.get("validation") or {}, (shipped or {}).get("validation") or {}
    comparable = new.get("split") is not None and new.get("split") == old.get("split")
    if shipped and not force and (not new or comparable and
                                  new["accuracy"] <= old["accuracy"]):
        return False, (f"not shipped: validation accuracy {new.get('accuracy', 0):.4f} does "
                       f"not beat the shipped model's {old.get('accuracy', 0):.4f} on the same "
                       "validation speakers" if new else
                       "not shipped: the run has no validation figure to choose by")
    os.makedirs(models_dir, exist_ok=True)
    for source, target in FILES.items():
        with atomic_path(os.path.join(models_dir, target)) as tmp:
            shutil.copyfile(os.path.join(tf_dir, source), tmp)
    atomic_write_text(os.path.join(models_dir, "README.md"), render_card(card))
    atomic_write_text(os.path.join(models_dir, CARD), json.dumps(card, indent=1) + "\n")
    return True, f"shipped to {models_dir}: held-out int8 accuracy {card['accuracy_int8']:.4f}"


def render_card(card):
    """The model card as markdown (models/README.md)."""
    recall = ", ".join(f"{k} {v:.2f}" for k, v in card["recall_int8"].items())
    lines = [
        "# The shipped model",
        "",
        f"`{card['model']}` ({card['size_bytes']:,} bytes, int8): the default model of "
        "`serve.py` and `label_stream.py`. Written by `kws/shipped.py`; `make real` replaces it "
        "when it trains a better one.",
        "",
        "| | |", "|---|---|",
        f"| data | {card['data']} |",
        f"| command | `{card['command']}` at commit `{card['commit']}`, {card['epochs']} epochs "
        f"({card['train_wall_minutes']} min) |",
        f"| accuracy | **{card['accuracy_int8']:.4f}** on {card['held_out_clips']} clips of "
        f"{card['held_out_speakers']} held-out speakers never trained on (12 classes, no TTA) |",
        f"| recall | {recall} |",
        f"| latency | {card['latency_ms']:.2f} ms a clip, one thread |",
        f"| CPU | {card['cpu']} |",
        f"| date | {card['date']} |",
    ]
    stream = card.get("streaming_held_out")
    if stream:
        lines.append(f"| streaming | {stream['detection_rate']:.1%} of command words detected "
                     f"at {stream['false_accepts_per_hour']:.1f} false accepts per hour on "
                     "held-out speakers' streams (20 dB SNR), settings in "
                     f"`{NAME}_streaming.json` |")
    lines += [
        "",
        "Files: the model and its labels; `*_stream_body_int8.tflite` + `*_stream.npz` let a "
        "stream compute only the front-end frames each hop adds; `*_streaming.json` is the "
        "recognizer's settings (threshold, smoothing, suppression) chosen on validation "
        "speakers' streams.",
        "",
    ]
    return "\n".join(lines)
