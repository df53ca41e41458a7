"""The output folder: its stamp (what a run makes, so a rerun resumes), the validation and
testing lists, the test set's answer key and the README.md that describes the data."""

import csv
import io
import json
import os

from kws.common import UserError, atomic_write_text
from kws.folders import BACKGROUND_NOISE_DIR_NAME
from kws.synthetic.render import MAX_WORD_SECONDS
from kws.synthetic.speakers import (
    TEST_PITCHES,
    TEST_RANGES,
    TEST_RATES,
    TRAIN_LENGTH_SCALES,
    TRAIN_PITCHES,
    TRAIN_RANGES,
    TRAIN_RATES,
    Speaker,
)

STAMP_NAME = ".make_synthetic_data.json"


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
