"""The real-speech recipe (what real.py runs): stage the real corpora into an honest split by
speaker, train the recipes' models, score them on held-out speakers, freeze and score the edge
model as int8, measure keyword spotting on long audio and on running speech, and ship the edge
model when it beats the shipped one on the same validation speakers. real.py's docstring tells
the recipe; here is how.

    results = run_recipe("../shared/data", "data/real", ["edge"], cap_minutes=90)

Light: every step that trains or freezes runs as the script a user would type (kws.recipe), so
this process never loads TensorFlow (the zoo comparison, kws.zoo_compare, does).
"""

import json
import os
import re
import shutil
import sys
import time
from contextlib import contextmanager

import numpy as np
from scipy import fft

from kws import CLIP_SAMPLES
from kws.audio import read_wav
from kws.common import UserError, atomic_write_text, require_dir, require_file
from kws.corpora import (
    EXTRA_SALT,
    EXTRA_VALIDATION_PERCENT,
    extra_split,
    link_into,
    stage_extra,
    stage_other_speech,
    stage_running_speech,
    training_recordings,
)
from kws.data import EVAL_NOISE_FRACTION
from kws.folders import (
    REAL_SALT,
    REAL_TESTING_PERCENT,
    REAL_VALIDATION_PERCENT,
    real_split,
    scan_data_dir,
    which_set,
)
from kws.labels import SILENCE_LABEL
from kws.pack import read_pack
from kws.pack_audio import RENDER_VERSION, render_pack_audio
from kws.recipe import (
    STREAM_RECOGNIZER,
    best_checkpoint,
    print_streaming,
    read_state,
    run_scored_step,
    run_step,
    running_speech_rate,
    stage_set,
    streaming_figures,
    training_record,
)
from kws.shipped import AUDIO_DATA, PACK_DATA, ship
from kws.synthetic.layout import read_stamp
from kws.synthetic.words import lookalike_words

DIGITS = "zero one two three four five six seven eight nine".split()
# The split, stated once: speakers by a salted hash; silence by where its noise came from
SPLIT_SALT, VALIDATION_PERCENT, TESTING_PERCENT = REAL_SALT, REAL_VALIDATION_PERCENT, \
    REAL_TESTING_PERCENT
# the spoken-digit speakers kept out of training, as other speech for the negative streams
DIGIT_SPEAKERS = {"validation": ("lucas",), "testing": ("theo",)}
# the validation speakers, named: a model is shipped by its accuracy on them, compared only
# with a model chosen on the same speakers
VALIDATION_SPLIT = (f"dev:{SPLIT_SALT}/{VALIDATION_PERCENT:g}%"
                    f"+extra:{EXTRA_SALT}/{EXTRA_VALIDATION_PERCENT:g}%")
CROP_MATCH = 0.99  # normalised correlation above which a silence clip is a crop of a recording
RECIPES = {  # name -> config; each config's "epochs" is its training budget
    "edge": "experiments/real_edge_voices.json",  # the pack and the extra voices too
    "seed195": "experiments/real_seed195.json",
    # seed195 with its rate decayed by a cosine: the plateau schedule never lowered it
    "seed195_cosine": "experiments/real_seed195_cosine.json",
    # the same in 14 epochs: with the rendered pack, no more steps than seed195's 20 without it
    "seed195_cosine14": "experiments/real_seed195_cosine14.json",
    "seed106": "experiments/real_seed106.json",  # the entry's ensemble member, on 12 classes
    "tutorial_conv": "experiments/real_tutorial_conv.json",
    # the edge model without the spectrogram pack, the same model and steps: the pack's gain
    "edge_audio_only": "experiments/real_edge_pack_audio_only.json",
    # a wider edge model, trained first: the edge model then distils from it
    "teacher": "experiments/real_teacher.json",
    # the same teacher trained twice as long (over make real's budget): does more training pay?
    "teacher_long": "experiments/real_teacher_long.json",
    # the teacher with its weights averaged (train.py --ema_momentum): 44 epochs' gain in 22?
    "teacher_ema": "experiments/real_teacher_ema.json",
    # the teacher without SpecAugment: is the 22-epoch teacher over-regularised for its budget?
    "teacher_nospec": "experiments/real_teacher_nospec.json",
    # the teacher at width 3.5 (about 935 KB as int8): does the 1 MB headroom buy accuracy?
    "teacher_wide": "experiments/real_teacher_wide.json",
    # the teacher without label smoothing: do confident scores rank commands above lookalikes?
    "teacher_nols": "experiments/real_teacher_nols.json",
    # the same teacher also learning the lookalike words (LOOKALIKE_TEACHERS) as unknown
    "teacher_nols_lookalikes": "experiments/real_teacher_nols.json",
    # a second cosine cycle of it, from its checkpoint chosen on validation (WARM_STARTS):
    # 44 epochs in two cycles, so 22 trained epochs are reused rather than redone
    "teacher_nols_lookalikes_cycle2": "experiments/real_teacher_nols.json",
    # its second cycle half as long, distilled from an ensemble of trained teachers (their mean
    # probabilities): can one model learn to score streams as an ensemble of them does?
    "teacher_nols_lookalikes_kd": "experiments/real_teacher_nols_kd.json",
    # its second cycle with the teacher's label smoothing (0.05), which gave the 44-epoch teacher
    # the best clips: the lookalikes' streams and smoothing's clips in one model?
    "teacher_lookalikes_cycle2": "experiments/real_teacher.json",
    # a third smoothed cycle from the second's checkpoint (66 epochs, 44 of them reused): the
    # clips gained from 22 epochs to 44; do they gain again?
    "teacher_lookalikes_cycle3": "experiments/real_teacher.json",
    # the lookalike teacher with each clip's mel bands stretched (vocal tract length
    # perturbation), which reaches the pack's images as no audio augmentation does: new voices?
    "teacher_nols_lookalikes_warp": "experiments/real_teacher_nols_warp.json",
    # the lookalike teacher at width 3.5 (935,248 bytes as int8, under the edge model's 1 MB):
    # does the size headroom buy new voices?
    "teacher_nols_lookalikes_wide": "experiments/real_teacher_nols_wide.json",
    # its smoothed second cycle (as teacher_lookalikes_cycle2, at width 3.5): the best clips
    # at width 3.0 came from 44 smoothed epochs; does the wider model reach 0.985 with them?
    "teacher_lookalikes_wide_cycle2": "experiments/real_teacher_wide.json",
}
# recipe -> the recipe whose run (the same seed, trained first when absent) it starts from
WARM_STARTS = {"teacher_nols_lookalikes_cycle2": "teacher_nols_lookalikes",
               "teacher_nols_lookalikes_kd": "teacher_nols_lookalikes",
               "teacher_lookalikes_cycle2": "teacher_nols_lookalikes",
               "teacher_lookalikes_cycle3": "teacher_lookalikes_cycle2",
               "teacher_lookalikes_wide_cycle2": "teacher_nols_lookalikes_wide"}
# the recipes that learn a teacher's soft targets (DISTILL): edge from the teacher recipe's run
# of the same seed or one --teacher_checkpoint; the others only from --teacher_checkpoint,
# repeated for an ensemble (train.py averages their probabilities)
DISTILLED_RECIPES = ("edge", "teacher_nols_lookalikes_kd")
# the recipes that learn the training lookalikes (kws.synthetic.words.LOOKALIKES, espeak-ng
# voices) as unknown words; so does every recipe warm-started from one (learns_lookalikes)
LOOKALIKE_TEACHERS = ("teacher_nols_lookalikes", "teacher_nols_lookalikes_warp",
                      "teacher_nols_lookalikes_wide")
LOOKALIKE_SPEAKERS = 80  # synthetic speakers a lookalike word
LOOKALIKE_VALIDATION_CLIPS = 20  # of each validation word in the validation negative stream,
# about as many clips as each real phrase there (alexa, smart mirror)
# the models that hear raw samples and so cannot learn from the pack's images, but can from
# the images rendered back to audio (real.py --pack_audio); a recipe of any of them does too
RAW_AUDIO_MODELS = ("seed195", "seed106")
DISTILL = ["--distill_weight", "0.5", "--distill_temperature", "2"]
# hard negatives for the student: windows of training-side speech the teacher hears as a command
MINING = ["--threshold", "0.5", "--hop_ms", "100"]
TTA = ["--tta_shift=-1600,1600", "--tta_gain", "1.25"]


def stage_v001(shared, out):
    """The v0.01 sample as out/<set>/<word>/<file> links, its speakers split by the same salted
    hash as the dev speakers: the training part trains, the others join their set's streams."""
    source = require_dir(os.path.join(shared, "speech_commands_v0.01_sample"), "v0.01 sample")
    if os.path.isdir(out):
        shutil.rmtree(out)
    for word in sorted(os.listdir(source)):
        folder = os.path.join(source, word)
        if not os.path.isdir(folder) or word.startswith("_"):
            continue
        for name in sorted(os.listdir(folder)):
            if name.lower().endswith(".wav"):
                which = which_set(name, VALIDATION_PERCENT, TESTING_PERCENT, SPLIT_SALT)
                link_into(os.path.join(folder, name), os.path.join(out, which, word, name))
    return set_folders(out)


def stage_digits(shared, out):
    """Free Spoken Digits as out/<set>/<word>/<speaker>_nohash_<n>.wav links, so they read as
    words: DIGIT_SPEAKERS name the speakers of the validation and the testing streams' other
    speech, the rest train (as unknown words)."""
    source = require_dir(os.path.join(shared, "free_spoken_digits", "recordings"),
                         "free spoken digits")
    if os.path.isdir(out):
        shutil.rmtree(out)
    for name in sorted(os.listdir(source)):
        match = re.fullmatch(r"(\d)_([a-z]+)_(\d+)\.wav", name)
        if not match:
            continue
        digit, speaker, n = match.groups()
        which = next((w for w, names in DIGIT_SPEAKERS.items() if speaker in names), "training")
        link_into(os.path.join(source, name),
                  os.path.join(out, which, DIGITS[int(digit)], f"{speaker}_nohash_{n}.wav"))
    return set_folders(out)


def set_folders(out):
    return {which: os.path.join(out, which) for which in ("training", "validation", "testing")}


def noise_spectra(noise_dir):
    """{name: (samples, their rFFT, FFT size, running sum of squares)} of the noise recordings."""
    spectra = {}
    for name in sorted(os.listdir(noise_dir)):
        if name.lower().endswith(".wav"):
            r = read_wav(os.path.join(noise_dir, name), num_samples=None).astype(np.float64)
            n = fft.next_fast_len(len(r) + CLIP_SAMPLES)
            spectra[name] = (r, fft.rfft(r, n), n, np.concatenate([[0.0], np.cumsum(r * r)]))
    return spectra


def locate_crop(clip, spectra, threshold=CROP_MATCH):
    """(recording name, start sample) where clip is a scaled crop of a noise recording, or None.

    Normalised cross-correlation against every recording (one FFT each); a crop at any gain
    scores 1.0, other audio stays far below (under 0.2 on the Speech Commands silence clips)."""
    clip = np.asarray(clip, np.float64)
    norm = np.linalg.norm(clip)
    best = (threshold, None)
    for name, (r, spectrum, n, squares) in spectra.items():
        if norm == 0 or len(r) < len(clip):
            continue
        corr = fft.irfft(spectrum * fft.rfft(clip[::-1], n), n)[len(clip) - 1:len(r)]
        energy = squares[len(clip):] - squares[:-len(clip)]
        ncc = corr / np.sqrt(np.maximum(energy, 1e-20)) / norm
        start = int(np.argmax(ncc))
        if ncc[start] > best[0]:
            best = (ncc[start], (name, start))
    return best[1]


def split_of(folder, fname, source, spectra, eval_fraction):
    """'training', 'validation', 'testing' or None (left out) for one clip of the dev folder.

    Speakers split by the salted hash. A silence clip cut from a noise recording is held out
    only when it lies in the recording's tail, which training never mixes in (kws.data keeps
    the last eval_fraction for evaluation); one from the head trains or validates. A silence
    clip of unknown source may share audio with its siblings, so it is held out or left out."""
    which = which_set(fname, VALIDATION_PERCENT, TESTING_PERCENT, SPLIT_SALT)
    if folder != SILENCE_LABEL:
        return which
    if source is None:
        return "testing" if which == "testing" else None
    name, start = source
    cut = int(len(spectra[name][0]) * (1 - eval_fraction))
    if start >= cut:
        return "testing"
    if start + CLIP_SAMPLES > cut:
        return None  # straddles the cut: it holds audio that held-out crops come from
    return "training" if which == "testing" else which


def stage_dev_split(dev_dir, noise_dir, out):
    """Link the dev clips into out/<folder>/<file> with validation_list.txt and testing_list.txt
    (lists win over hashing in kws.data), so every script reads the same honest split."""
    summary_path = os.path.join(out, "split.json")
    recipe = {"source": os.path.abspath(dev_dir), "noise": os.path.abspath(noise_dir),
              "salt": SPLIT_SALT, "validation_percent": VALIDATION_PERCENT,
              "testing_percent": TESTING_PERCENT, "eval_noise_fraction": EVAL_NOISE_FRACTION,
              "crop_match": CROP_MATCH}
    if os.path.isfile(summary_path):
        with open(summary_path, encoding="utf-8") as f:
            summary = json.load(f)
        if all(summary.get(k) == v for k, v in recipe.items()):
            return out, summary
    if os.path.isdir(out):
        shutil.rmtree(out)
    counts, sources = link_dev_split(dev_dir, noise_spectra(noise_dir), out)
    summary = {**recipe, "counts": counts, "silence_sources": sources}
    atomic_write_text(summary_path, json.dumps(summary, indent=1))
    return out, summary


def link_dev_split(dev_dir, spectra, out):
    """Link each kept dev clip into out/ and write the validation and testing lists; returns
    (clips per set/folder, the source found for each silence clip)."""
    scanned = scan_data_dir(dev_dir)
    lists = {"validation": [], "testing": []}
    counts, sources = {}, {}
    for folder, files in sorted(scanned.words.items()):
        for fname in files:
            path = os.path.join(scanned.root, folder, fname)
            source = None
            if folder == SILENCE_LABEL:
                source = locate_crop(read_wav(path), spectra)
                sources[fname] = list(source) if source else None
            which = split_of(folder, fname, source, spectra, EVAL_NOISE_FRACTION)
            counts[f"{which}/{folder}"] = counts.get(f"{which}/{folder}", 0) + 1
            if which is None:
                continue
            link_into(path, os.path.join(out, folder, fname))
            if which in lists:
                lists[which].append(f"{folder}/{fname}")
    for which, lines in lists.items():
        atomic_write_text(os.path.join(out, f"{which}_list.txt"), "\n".join(lines) + "\n")
    return counts, sources


def recipe_config(config):
    with open(config, encoding="utf-8") as f:
        return json.load(f)


def uses_pack(config):
    return "pack_frequency" in recipe_config(config)


def hears_raw_audio(config):
    return recipe_config(config)["model"] in RAW_AUDIO_MODELS


def train_command(py, config, data_args, exp_name, cap_minutes=0, seed=None):
    cmd = [py, "train.py", "--config", config, "--exp_name", exp_name,
           "--data_dir", data_args["data_dir"], "--cap_minutes", f"{cap_minutes:g}",
           "--checkpoint_dir", "checkpoints", "--log_dir", "logs", "--resume"]
    if uses_pack(config):
        cmd += ["--pack", data_args["pack"]]
        for folder in data_args.get("pack_held_out", []):
            cmd += ["--pack_held_out_dir", folder]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    for d in data_args["train_only"]:
        cmd += ["--train_only_dir", d]
    return cmd + ["--noise_dir", data_args["noise"]]


def stage_inputs(py, shared, out_dir, models, synthetic_dir):
    """Stage every corpus of the shared folder under out_dir; returns (data_args for
    train_command, the staged sets {v001, digits, other, running: {set: folder}}, noise)."""
    shared = require_dir(shared, "shared data folder")
    noise = require_dir(os.path.join(shared, "background_noise"), "background noise")
    dev = require_dir(os.path.join(shared, "speech_commands_test_v0.02_dev"), "v0.02 test clips")
    staged = {"v001": stage_v001(shared, os.path.join(out_dir, "v001")),
              "digits": stage_digits(shared, os.path.join(out_dir, "digits"))}
    extra = stage_extra(shared, os.path.join(out_dir, "extra"))
    staged["other"] = stage_other_speech(shared, os.path.join(out_dir, "other_speech"))
    staged["running"] = stage_running_speech(shared, os.path.join(out_dir, "running_speech"))
    print(f"extra speakers: {extra['speakers']}; running speech speakers: "
          f"{staged['running']['speakers']}")
    pack_zip = os.path.join(shared, "speech_commands_v0.02_spectrograms.zip")
    data_args = {
        "pack": require_file(pack_zip, "spectrogram pack")
        if any(uses_pack(RECIPES[m]) for m in models) else None,
        "pack_zip": pack_zip,  # for --pack_audio, which renders it for the raw-audio models
        "data_dir": ",".join([stage_dev_split(dev, noise, os.path.join(out_dir, "dev"))[0],
                              extra["dir"]]),
        "noise": noise,
        # the v0.01 speakers of the validation and held-out streams are v0.02 pack speakers too
        "pack_held_out": [staged["v001"][s] for s in ("validation", "testing")
                          if os.path.isdir(staged["v001"][s])],
        "train_only": [staged["v001"]["training"], staged["digits"]["training"],
                       staged["other"]["training"], staged["running"]["training"],
                       os.path.join(synthetic_dir, "train", "audio")],
    }
    if not os.path.isdir(data_args["train_only"][-1]):
        run_step("synthetic speech", [py, "make_synthetic_data.py", "--out_dir", synthetic_dir])
    if any(learns_lookalikes(m) for m in models):
        data_args["lookalikes"] = stage_lookalikes(py, out_dir, synthetic_dir + "_lookalikes")
    return data_args, staged


def stage_lookalikes(py, out_dir, synthetic_dir):
    """The lookalike words said by synthetic speakers (made once under synthetic_dir; a cut
    synthesis resumes), linked as out_dir/lookalikes/<set>/<word>/<file>: every training
    word's clips, and the first LOOKALIKE_VALIDATION_CLIPS clips of each validation word.
    Returns {set: folder}."""
    words = {which: lookalike_words(which) for which in ("training", "validation")}
    audio = os.path.join(synthetic_dir, "train", "audio")
    made = (read_stamp(synthetic_dir) or {}).get("complete") and all(
        os.path.isdir(os.path.join(audio, w)) for ws in words.values() for w in ws)
    if not made:  # absent, or cut short: make_synthetic_data.py resumes what it wrote
        run_step("synthetic lookalike words", [
            py, "make_synthetic_data.py", "--out_dir", synthetic_dir, "--words",
            ",".join(words["training"] + words["validation"]), "--unknown_words", "none",
            "--test_clips", "0", "--speakers_per_word", str(LOOKALIKE_SPEAKERS),
            "--validation_percentage", "0", "--testing_percentage", "0", "--quiet"])
    out = os.path.join(out_dir, "lookalikes")
    if os.path.isdir(out):
        shutil.rmtree(out)
    keep = {"training": None, "validation": LOOKALIKE_VALIDATION_CLIPS}
    for which, ws in words.items():
        for word in ws:
            for name in sorted(os.listdir(os.path.join(audio, word)))[:keep[which]]:
                link_into(os.path.join(audio, word, name), os.path.join(out, which, word, name))
    return {which: os.path.join(out, which) for which in words}


def teacher_tag(teacher, seed=None):
    """'' for a student of the teacher recipe's run of the same seed (what `--models
    teacher,edge` trains first), else '_' and the teacher's run (e.g. '_teacher_long_s2'):
    students of different teachers never share a checkpoint folder."""
    run = os.path.basename(os.path.dirname(os.path.abspath(teacher)))
    own = "real_teacher" + (f"_s{seed}" if seed is not None else "")
    return "" if run == own else "_" + run.removeprefix("real_")


def train_and_score(py, name, data_args, held_out, out_dir, cap_minutes, seed, teachers=(),
                    tag="", init=None):
    """Train one recipe (distilled from the teachers' checkpoints, their mean probabilities,
    for a recipe of DISTILLED_RECIPES; from init's weights when given) and score its best
    checkpoint on the held-out speakers with TTA; returns its results entry. tag: what sets
    the run's data apart (its checkpoint folder's name says it, so no run resumes another)."""
    distils = name in DISTILLED_RECIPES and bool(teachers)
    exp = f"real_{name}" + ("_kd" + teacher_tag(teachers[0], seed) if name == "edge" and distils
                            else "") + tag + (f"_s{seed}" if seed is not None else "")
    cmd = train_command(py, RECIPES[name], data_args, exp, cap_minutes, seed)
    if distils:
        for teacher in teachers:
            cmd += ["--teacher_checkpoint", teacher]
        cmd += DISTILL
    if init:
        cmd += ["--init_checkpoint", init]
    run_step(f"train {name}" + (f" (distilled from {len(teachers)} teacher(s))" if distils
                                else ""), cmd)
    checkpoint = best_checkpoint(os.path.join("checkpoints", exp))
    scored = run_scored_step(f"score {name} on held-out speakers (TTA)", [
        py, "make_submission.py", "--checkpoint", checkpoint, "--test_data", held_out,
        "--submission_fn", os.path.join(out_dir, name, "held_out.csv"), *TTA,
        "--fresh"], os.path.join(out_dir, name, "held_out.metrics.json"))
    return {"checkpoint": checkpoint, **({"teachers": list(teachers)} if distils else {}),
            "accuracy_tta": scored["accuracy"], "recall_tta": scored["recall"],
            "validation_accuracy":
            read_state(os.path.join("checkpoints", exp))["best_val_accuracy"],
            **training_record(os.path.join("checkpoints", exp))}


def trains_in_every_split(speaker):
    """True for a speaker on the training side of both the dev split and the extra split: a
    pack speaker may belong to either set, so an image renders only when neither holds it out."""
    return (real_split(f"{speaker}_nohash_0") == "training"
            and extra_split(speaker) == "training")


def stage_pack_audio(pack_path, out_dir, per_label, cache_dir="data/pack"):
    """Up to per_label training-side pack images of each label rendered to audio (kws.pack_audio)
    under out_dir/pack_audio, for the raw-audio models; returns (folder, {word: clips}). A
    folder rendered with other settings is rendered afresh; the same settings resume."""
    out = os.path.join(out_dir, "pack_audio")
    settings = {"pack": os.path.abspath(pack_path), "per_label": per_label,
                "split": VALIDATION_SPLIT, "testing": f"{SPLIT_SALT}/{TESTING_PERCENT:g}%",
                "renderer": RENDER_VERSION}
    settings_path = os.path.join(out, "settings.json")
    if os.path.isdir(out):
        try:
            with open(settings_path, encoding="utf-8") as f:
                same = json.load(f) == settings
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)
    atomic_write_text(settings_path, json.dumps(settings, indent=1) + "\n")
    print(f"=== render up to {per_label} training-side pack images a label as audio")
    pack = read_pack(require_file(pack_path, "spectrogram pack"), cache_dir)
    counts = render_pack_audio(pack, out, per_label, trains_in_every_split)
    print(f"pack audio: {sum(counts.values()):,} clips of {len(counts)} words in {out}")
    return out, counts


def mine_hard_negatives(py, shared, teacher, out_dir):
    """The windows of the training side's other and running speech (never a validation or
    held-out voice or phrase) that the teacher hears as a command, for the student to learn
    as unknown words; returns (mine_negatives.py's figures, the folder to train on)."""
    out = os.path.join(out_dir, "hard_negatives")
    if os.path.isdir(out):
        shutil.rmtree(out)  # windows another teacher mined must not train this student
    os.makedirs(out)
    listing = os.path.join(out_dir, "mining_recordings.txt")
    atomic_write_text(listing, "\n".join(training_recordings(shared)) + "\n")
    figures = run_scored_step("mine hard negatives with the teacher", [
        py, "mine_negatives.py", "--model", teacher, "--wav_list", listing, "--out_dir", out,
        *MINING], os.path.join(out_dir, "hard_negatives.json"))
    return figures, out


def edge_figures(py, results, data_args, staged, held_out, out_dir, tf_dir, stream_minutes,
                 negative_stream_minutes, frozen="edge"):
    """Freeze and score the edge model (or the trained model `frozen` names) as int8, then its
    keyword spotting on long audio and on running speech; adds them to results (its int8
    figures as results["edge_int8"]: the model that may ship)."""
    v001, digits, other, running = (staged[k] for k in ("v001", "digits", "other", "running"))
    lookalikes = [data_args["lookalikes"]["validation"]] if learns_lookalikes(frozen) else []
    results["frozen"] = frozen
    results["edge_int8"] = freeze_and_score_edge(py, results["models"][frozen]["checkpoint"],
                                                 data_args, held_out, out_dir, tf_dir)
    validation = stage_set(data_args["data_dir"], "validation",
                           os.path.join(out_dir, "validation"))[0]
    results["validation"] = {"accuracy": results["models"][frozen]["validation_accuracy"],
                             "split": VALIDATION_SPLIT}
    model = os.path.join(tf_dir, "model_int8.tflite")
    results["streaming"] = streaming_figures(
        py, model, [validation, v001["validation"]], [held_out, v001["testing"]],
        data_args["noise"], os.path.join(out_dir, "streams"), stream_minutes,
        negative_stream_minutes, recognizer=STREAM_RECOGNIZER,
        other_speech={"validation": [digits["validation"], other["validation"], *lookalikes],
                      "test": [digits["testing"], other["testing"]]}, other_share=-1)
    results["running_speech"] = {
        which: running_speech_rate(py, model, running[which],
                                   os.path.join(out_dir, "streams", f"running_{which}.csv"))
        for which in ("validation", "testing")}


@contextmanager
def timed(minutes, part):
    """Add the block's wall-clock minutes to minutes[part] (results.json says how long each
    part of a run took, so `make real`'s time is recorded by the run itself)."""
    start = time.monotonic()
    try:
        yield
    finally:
        minutes[part] = round(minutes.get(part, 0.0) + (time.monotonic() - start) / 60, 2)


def warm_start_chain(name):
    """The recipes a run of name trains, first to last: the chain of WARM_STARTS it starts
    from (a third cycle needs its second, which needs its first), then name itself."""
    chain = [name]
    while chain[0] in WARM_STARTS:
        chain.insert(0, WARM_STARTS[chain[0]])
    return chain


def learns_lookalikes(name):
    """True for a lookalike teacher and every recipe that starts from one: a later cycle
    trains on its first cycle's data, and its streams' threshold sees the validation
    lookalikes too."""
    return warm_start_chain(name)[0] in LOOKALIKE_TEACHERS


def training_order(models):
    """The models in the order they train: a teacher first, and each recipe of WARM_STARTS
    just after the recipe it starts from (added, with the recipes that one starts from, when
    not asked for)."""
    order = []
    for name in sorted(models, key=lambda m: m != "teacher"):
        for m in warm_start_chain(name):
            if m not in order:
                order.append(m)
    return order


def train_models(py, shared, models, data_args, held_out, out_dir, cap_minutes, seed,
                 teacher_checkpoint, results, pack_audio=0):
    """Train and score every model, a teacher first: the edge model then distils from it (or
    from teacher_checkpoint, a list of checkpoints: the edge model takes one, the other
    DISTILLED_RECIPES their ensemble) and learns the hard negatives it mines; with pack_audio
    the raw-audio models also learn from up to that many pack images a label rendered to audio;
    a recipe of WARM_STARTS trains (or resumes) its first cycle, then starts from its weights."""
    for name in training_order(models):
        teachers = ()
        if name in DISTILLED_RECIPES:
            own = results["models"].get("teacher", {}).get("checkpoint")
            teachers = [own] if own and name == "edge" else list(teacher_checkpoint or [])
            if name != "edge" and not teachers:
                raise UserError(f"{name} distils from teacher checkpoints; none given")
        model_data, tag = data_args, ""
        if pack_audio and hears_raw_audio(RECIPES[name]):
            if "pack_audio" not in results:
                with timed(results["minutes"], "pack_audio"):
                    rendered, counts = stage_pack_audio(data_args["pack_zip"], out_dir,
                                                        pack_audio)
                results["pack_audio"] = {"per_label": pack_audio, "dir": rendered,
                                         "clips": sum(counts.values()), "words": counts}
            model_data = {**data_args, "train_only": data_args["train_only"]
                          + [results["pack_audio"]["dir"]]}
            tag = f"_pack_audio{pack_audio}"
        if name == "edge" and teachers:
            results["teacher_checkpoint"] = teachers[0]
            with timed(results["minutes"], "hard_negatives"):
                results["hard_negatives"], mined = mine_hard_negatives(py, shared, teachers[0],
                                                                       out_dir)
            model_data = {**data_args, "train_only": data_args["train_only"] + [mined]}
        if learns_lookalikes(name):
            model_data = {**model_data, "train_only": model_data["train_only"]
                          + [data_args["lookalikes"]["training"]]}
        init = results["models"][WARM_STARTS[name]]["checkpoint"] if name in WARM_STARTS \
            else None
        with timed(results["minutes"], name):
            results["models"][name] = train_and_score(py, name, model_data, held_out, out_dir,
                                                      cap_minutes, seed, teachers, tag=tag,
                                                      init=init)


def default_frozen(models):
    """The model a run freezes when --frozen is not given: the edge model (the student, when a
    teacher trains too), else the teacher, else none of them ("")."""
    return next((name for name in ("edge", "teacher") if name in models), "")


def run_recipe(shared, out_dir, models, cap_minutes=90.0, stream_minutes=20.0,
               negative_stream_minutes=120.0, seed=None, synthetic_dir="data/synthetic",
               ship_model=True, teacher_checkpoint=None, frozen=None, command="make real",
               pack_audio=0):
    """The whole recipe (real.py without --zoo_cpu_minutes); writes out_dir/results.json and
    returns the results. teacher_checkpoint: trained teachers' checkpoints, the one the edge
    model distils from (and mines hard negatives with) when "teacher" is not among models, or
    the ensemble the other DISTILLED_RECIPES distil from. frozen: the model
    that is frozen, streamed and may ship (its int8 file under 1 MB; None: default_frozen);
    command: the card's."""
    frozen = default_frozen(models) if frozen is None else frozen
    py = sys.executable
    start, minutes = time.monotonic(), {}
    with timed(minutes, "staging"):
        data_args, staged = stage_inputs(py, shared, out_dir, models, synthetic_dir)
        held_out, n_speakers, n_clips = stage_set(data_args["data_dir"], "testing",
                                                  os.path.join(out_dir, "held_out"))
        data_args["calibration"] = stage_set(data_args["data_dir"], "training",
                                             os.path.join(out_dir, "calibration"))[0]
    results = {"held_out_speakers": n_speakers, "held_out_clips": n_clips, "models": {},
               "minutes": minutes}
    tf_dir = tf_dir_of(out_dir)
    train_models(py, shared, models, data_args, held_out, out_dir, cap_minutes, seed,
                 teacher_checkpoint, results, pack_audio)
    if frozen in models:
        with timed(minutes, "frozen_model_figures"):
            edge_figures(py, results, data_args, staged, held_out, out_dir, tf_dir,
                         stream_minutes, negative_stream_minutes, frozen)
    results["tf_dir"] = tf_dir
    minutes["total"] = round((time.monotonic() - start) / 60, 2)
    path = os.path.join(out_dir, "results.json")
    atomic_write_text(path, json.dumps(results, indent=1))
    print_summary(results, path)
    if frozen in models and ship_model:
        data = AUDIO_DATA + (PACK_DATA if uses_pack(RECIPES[frozen]) else "")
        print(ship(tf_dir, results, command=command, data=data)[1])
    return results


def tf_dir_of(out_dir):
    """Where a run's frozen models go: tf_files/<name of its out_dir> (data/real ->
    tf_files/real), so runs of other seeds keep theirs apart."""
    return os.path.join("tf_files", os.path.basename(os.path.normpath(out_dir)))


def freeze_and_score_edge(py, checkpoint, data_args, held_out, out_dir, tf_dir):
    os.makedirs(tf_dir, exist_ok=True)
    run_step("freeze the edge model", [
        py, "freeze_graph.py", "--checkpoint", checkpoint, "--frozen_path",
        os.path.join(tf_dir, "model.pb"), "--output_labels", os.path.join(tf_dir, "labels.txt"),
        "--calibration_data", data_args["calibration"], "--num_calibration", "300"])
    result = {}
    for kind, model_file in (("float", "model.tflite"), ("int8", "model_int8.tflite")):
        scored = run_scored_step(f"score the {kind} .tflite one clip at a time", [
            py, "make_submission_on_rpi.py", "--model", os.path.join(tf_dir, model_file),
            "--test_data", held_out, "--labels", os.path.join(tf_dir, "labels.txt"),
            "--submission_fn", os.path.join(out_dir, "edge", f"held_out_{kind}.csv")],
            os.path.join(out_dir, "edge", f"held_out_{kind}.metrics.json"))
        result[kind] = {"accuracy": scored["accuracy"], "recall": scored["recall"],
                        "latency_ms": scored["latency_ms_median"],
                        "size_bytes": scored["model_bytes"]}
    return result


def print_summary(results, path):
    print(f"\n=== results on {results['held_out_clips']} clips of "
          f"{results['held_out_speakers']} held-out speakers")
    for name, r in results["models"].items():
        print(f"{name:<14} accuracy with TTA {r['accuracy_tta']:.4f} after {r['epochs']} epochs "
              f"(stopped by {r['stopped_by']}, {r['train_wall_minutes']} min)")
    if "hard_negatives" in results:
        mined = results["hard_negatives"]
        print(f"hard negatives mined with the teacher: {mined['windows']} windows of "
              f"{mined['recordings']} training-side recordings {mined['heard']}")
    for kind, r in results.get("edge_int8", {}).items():
        print(f"{results.get('frozen', 'edge')} .tflite {kind:<6} "
              f"accuracy {r['accuracy']:.4f} (no TTA), "
              f"{r['latency_ms']:.3f} ms/clip, {r['size_bytes']:,} bytes")
    if "streaming" in results:
        print_streaming(results["streaming"])
    for which, r in results.get("running_speech", {}).items():
        print(f"running speech ({which} speakers, {r['minutes']} min): "
              f"{r['detections_per_hour']} command detections per hour {r['by_word']}")
    minutes = results.get("minutes", {})
    if "total" in minutes:
        print(f"took {minutes['total']:.1f} min: " + ", ".join(
            f"{part} {m:.1f}" for part, m in minutes.items() if part != "total"))
    print(f"results: {path}; frozen models: {results.get('tf_dir')}")
