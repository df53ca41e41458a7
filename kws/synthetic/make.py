"""Make the whole synthetic data set: resolve the words and voices the flags ask for (probing
espeak-ng in a child process), build the config that the stamp records, then plan, say and write
every file. make_synthetic_data.py is the command line over `build_config` and `make_dataset`."""

import json
import os
import time

from kws import noise as colored
from kws.common import UserError, atomic_write_text
from kws.folders import BACKGROUND_NOISE_DIR_NAME
from kws.labels import COMPETITION_WORDS
from kws.synthetic.espeak import (
    espeak_data_path,
    espeak_version,
    find_english_voices,
    find_variants,
    probe_espeak,
)
from kws.synthetic.forking import run_in_child
from kws.synthetic.jobs import JOBS_PER_CHUNK, run_jobs
from kws.synthetic.layout import (
    STAMP_NAME,
    prepare_out_dir,
    readme_text,
    write_answers,
    write_lists,
)
from kws.synthetic.piper import piper_speaker_counts
from kws.synthetic.plan import plan_test, plan_training
from kws.synthetic.words import choose, parse_words

FORMAT_VERSION = 1
NOISE_DIR = os.path.join("train", "audio", BACKGROUND_NOISE_DIR_NAME)


def choose_words(words_flag, test_words_flag, unknown_words_flag):
    """(words, test words, unknown words) from the three flags; unknown words in --words go."""
    words = parse_words(words_flag)
    if test_words_flag == "auto":
        test_words = [w for w in COMPETITION_WORDS if w in words] or list(words)
    else:
        test_words = parse_words(test_words_flag, "--test_words")
        missing = [w for w in test_words if w not in words]
        if missing:
            raise UserError(f"--test_words not in --words: {', '.join(missing)}")
    lowered = {w.lower() for w in words}
    unknown_words = ([] if unknown_words_flag.strip() == "none" else
                     [w for w in parse_words(unknown_words_flag, "--unknown_words")
                      if w.lower() not in lowered])
    return words, test_words, unknown_words


def choose_voices(voices_flag, variants_flag, words, unknown_words):
    """(voices, variants, unknown words) that espeak-ng really has and says, probed in a child
    process; a voice or variant asked for by name that it cannot use is an error."""
    data_path = espeak_data_path()
    voices = choose(voices_flag, list(find_english_voices(data_path)), "voice")
    variants = choose(variants_flag, find_variants(data_path), "variant")
    if not voices:
        raise UserError("no voices chosen")
    probe = run_in_child(probe_espeak, voices, variants, words + unknown_words)
    lost_voices = [v for v in voices if v not in probe["voices"]]
    lost_variants = [v for v in variants if v not in probe["variants"]]
    if (lost_voices and voices_flag != "all") or not probe["voices"]:
        raise UserError(f"espeak-ng cannot speak with voice(s) {', '.join(lost_voices)}")
    if lost_variants and variants_flag not in ("all", "none"):
        raise UserError(f"espeak-ng cannot use variant(s) {', '.join(lost_variants)}")
    silent = [w for w in probe["silent_words"] if w in words]
    if silent:
        raise UserError(f"espeak-ng says nothing for {', '.join(map(repr, silent))}")
    unknown_words = [w for w in unknown_words if w not in probe["silent_words"]]
    return probe["voices"], probe["variants"], unknown_words


def build_config(flags):
    """The config of a run from make_synthetic_data.py's flags (its argparse namespace): what
    the stamp records, so the same config resumes and another one starts afresh."""
    words, test_words, unknown_words = choose_words(flags.words, flags.test_words,
                                                    flags.unknown_words)
    colors = colored.parse_colors(flags.noise_colors)
    piper_voices = piper_speaker_counts(flags.piper_voice)
    voices, variants, unknown_words = choose_voices(flags.voices, flags.variants, words,
                                                    unknown_words)
    return {
        "version": FORMAT_VERSION, "words": words, "test_words": test_words,
        "aux_words": [w for w in words if w not in test_words], "unknown_words": unknown_words,
        "speakers_per_word": flags.speakers_per_word, "max_speakers": flags.max_speakers,
        "repeats": flags.repeats, "validation_percentage": flags.validation_percentage,
        "testing_percentage": flags.testing_percentage, "test_clips": flags.test_clips,
        "test_speakers": flags.test_speakers, "voices": voices, "variants": variants,
        "noise_seconds": flags.noise_seconds, "noise_colors": colors,
        "reverb_probability": flags.reverb_probability,
        "noise_probability": flags.noise_probability, "seed": flags.seed,
        "jobs_per_chunk": JOBS_PER_CHUNK, "espeakng_loader": espeak_version(),
        "piper_voices": piper_voices, "piper_share": flags.piper_share,
    }


def planned_files(jobs, noise_rel):
    """Every file a run writes, relative to the output folder; a repeated name is an error."""
    files = ([rel for job in jobs for rel, _, _ in job.clips] + noise_rel +
             ["train/validation_list.txt", "train/testing_list.txt", "test/answers.csv",
              "README.md"])
    if len(set(files)) != len(files):
        raise UserError("two clips got the same file name (a speaker id collision); "
                        "try another --seed")
    return files


def say_all(jobs, out_dir, keep, workers, progress):
    """Say every job's clips (workers 0: one process per core, at most 8); count written."""
    workers = workers or min(8, os.cpu_count() or 1)
    try:
        return run_jobs(jobs, out_dir, keep, workers, progress)
    except RuntimeError as e:  # from a worker: espeak-ng refused a voice or said nothing
        raise UserError(str(e)) from None


def write_key_files(out_dir, lists, answers):
    """The validation and testing lists and the test set's answer key (empty if no clips)."""
    write_lists(out_dir, lists)
    if not answers:
        os.makedirs(os.path.join(out_dir, "test", "audio"), exist_ok=True)
    write_answers(out_dir, answers)


def summary_line(out_dir, config, lists, answers, written, clips, seconds):
    piper_voices = config["piper_voices"]
    return (f"{out_dir}: {sum(len(v) for v in lists.values())} training-folder clips "
            f"({', '.join(f'{k} {len(v)}' for k, v in lists.items())}), {len(answers)} test "
            f"clips, {len(config['noise_colors'])} noise files; wrote {written} of {clips} clips "
            f"in {seconds:.1f} s with {len(config['voices'])} voices x "
            f"{len(config['variants'])} variants"
            + (f" + {len(piper_voices)} Piper voice(s)" if piper_voices else ""))


def make_dataset(config, out_dir, workers=0, progress=True, command=""):
    """Write the data set of config into out_dir (resuming a run of the same config); return
    the one-line summary. command is the command line the README quotes."""
    started = time.time()
    train_jobs, lists, groups = plan_training(config, config["voices"], config["variants"])
    test_jobs, answers, test_speakers = plan_test(config, config["voices"], config["variants"])
    noise_rel = [os.path.join(NOISE_DIR, colored.noise_filename(c))
                 for c in config["noise_colors"]]
    files = planned_files(train_jobs + test_jobs, noise_rel)
    keep = prepare_out_dir(out_dir, config, files)
    colored.write_noise_files(os.path.join(out_dir, NOISE_DIR), config["noise_colors"],
                              config["noise_seconds"], -20.0, config["seed"], skip_existing=keep)
    written = say_all(train_jobs + test_jobs, out_dir, keep, workers, progress)
    write_key_files(out_dir, lists, answers)
    atomic_write_text(os.path.join(out_dir, "README.md"),
                      readme_text(config, command, groups, lists, test_speakers, answers,
                                  noise_rel))
    atomic_write_text(os.path.join(out_dir, STAMP_NAME),
                      json.dumps({"config": config, "files": sorted(files), "complete": True}))
    clips = sum(len(j.clips) for j in train_jobs + test_jobs)
    return summary_line(out_dir, config, lists, answers, written, clips, time.time() - started)
