"""The plan: every file of the data set, its speaker and its seed (training pool and test set)."""

import hashlib
import os

import numpy as np

from kws.common import UserError
from kws.synthetic.jobs import Job
from kws.synthetic.speakers import by_engine, sample_pool, stable_seed


def split_counts(total, validation_percentage, testing_percentage):
    """(training, validation, testing) counts of total, at least one each where asked for."""
    def part(pct):
        if pct <= 0 or total < 3:
            return 0
        return max(1, int(round(total * pct / 100)))
    val, test = part(validation_percentage), part(testing_percentage)
    if val + test >= total:
        raise UserError(f"{total} speakers cannot be split {validation_percentage}% / "
                        f"{testing_percentage}% and still leave some for training")
    return total - val - test, val, test


def plan_training(config, voices, variants):
    """Training jobs (one per speaker) and {set: [relative list paths]}."""
    seed = config["seed"]
    pool = sample_pool(config["max_speakers"], config, voices, variants, "train")
    n_train, n_val, n_test = split_counts(len(pool), config["validation_percentage"],
                                          config["testing_percentage"])
    groups = {"training": pool[:n_train], "validation": pool[n_train:n_train + n_val],
              "testing": pool[n_train + n_val:]}
    per_word = dict(zip(("training", "validation", "testing"),
                        split_counts(config["speakers_per_word"], config["validation_percentage"],
                                     config["testing_percentage"])))
    rng = np.random.default_rng(stable_seed(seed, "assign"))
    said = {s.id: [] for s in pool}  # speaker id -> [(word, n)]
    lists = {"training": [], "validation": [], "testing": []}
    for word in config["words"]:
        for which, group in groups.items():
            chosen = rng.choice(len(group), size=min(per_word[which], len(group)), replace=False)
            for i in sorted(chosen):
                for n in range(config["repeats"]):
                    said[group[i].id].append((word, n))
                    lists[which].append(f"{word}/{group[i].id}_nohash_{n}.wav")
    options = {k: config[k] for k in ("reverb_probability", "noise_probability")}
    jobs = []
    for speaker in pool:
        clips = [(os.path.join("train", "audio", word, f"{speaker.id}_nohash_{n}.wav"), word,
                  stable_seed(seed, "train", speaker.id, word, n))
                 for word, n in said[speaker.id]]
        if clips:
            jobs.append(Job(speaker, clips, options))
    return by_engine(jobs), lists, groups


def test_label_counts(config):
    """How many test clips of each answer label: one share per test word and for silence, two
    for unknown (the Kaggle test set has many more unknown clips than any one word)."""
    labels = list(config["test_words"]) + ["silence"]
    has_unknown = bool(config["unknown_words"] or config["aux_words"])
    shares = len(labels) + (2 if has_unknown else 0)
    per_share = config["test_clips"] // shares
    counts = {label: per_share for label in labels}
    if has_unknown:
        counts["unknown"] = config["test_clips"] - per_share * len(labels)
    else:
        counts["silence"] += config["test_clips"] - per_share * shares
    return counts


def plan_test(config, voices, variants):
    """Test jobs and the answer key [(fname, label)] for test/audio."""
    seed = config["seed"]
    if config["test_clips"] == 0:
        return [], [], []
    speakers = sample_pool(config["test_speakers"], config, voices, variants, "test")
    rng = np.random.default_rng(stable_seed(seed, "test plan"))
    by_speaker = {s.id: [] for s in speakers}
    silence, answers = [], []
    index = 0
    for label, count in test_label_counts(config).items():
        for _ in range(count):
            index += 1
            fname = f"clip_{hashlib.sha1(f'{seed}|test|{index}'.encode()).hexdigest()[:10]}.wav"
            rel = os.path.join("test", "audio", fname)
            clip_seed = stable_seed(seed, "test", index)
            answers.append((fname, label))
            if label == "silence":
                silence.append((rel, None, clip_seed))
                continue
            word = label
            if label == "unknown":
                pools = [p for p in (config["unknown_words"], config["aux_words"]) if p]
                choice = pools[int(rng.integers(len(pools)))]
                word = choice[int(rng.integers(len(choice)))]
            speaker = speakers[int(rng.integers(len(speakers)))]
            by_speaker[speaker.id].append((rel, word, clip_seed))
    options = {k: config[k] for k in ("reverb_probability", "noise_probability")}
    jobs = by_engine([Job(s, by_speaker[s.id], options) for s in speakers if by_speaker[s.id]])
    if silence:
        jobs.append(Job(None, silence, options))
    return jobs, sorted(answers), speakers
