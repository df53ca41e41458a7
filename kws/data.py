"""AudioProcessor: find labelled clips, split them by speaker, and feed augmented batches to Keras.

Reads the Speech Commands training layout (`<word>/<speaker>_nohash_<n>.wav`, `_background_noise_/`,
optional `validation_list.txt` / `testing_list.txt` beside the word folders or one level up as in
Kaggle's `train/audio`), the official test-set layout (`_silence_/`, `_unknown_/`, the ten words),
several data dirs at once, and pseudo-labelled pools. The split follows the TF speech_commands
tutorial (`which_set`), so our sets equal the tutorial's on the real dataset.
"""

import argparse
import csv
import dataclasses
import math
import os
import sys

import numpy as np

from kws import CLIP_SAMPLES
from kws.audio import AudioError, read_many, read_wav, warn_skipped
from kws.augment import (
    RANDOM_SEED,
    Augmentation,
    NoiseBank,
    apply_augmentation,
    augment_batch,
    augmentation_draws,
    replica_slices,
    shift_mode,
)
from kws.common import UserError
from kws.folders import (
    BACKGROUND_NOISE_DIR_NAME,
    SETS,
    assign_set,
    clips_in,
    scan_data_dir,
    speaker_id,
)
from kws.labels import (
    COMPETITION_WORDS,
    SILENCE_LABEL,
    UNKNOWN_LABEL,
    model_label,
)

EVAL_NOISE_FRACTION = 0.2  # the tail of each noise recording: evaluation silence only


PSEUDO_SOURCES_FILE = "pseudo_sources.csv"  # a pseudo pool: `file,fname` of each clip


@dataclasses.dataclass
class DataSettings:
    """What an AudioProcessor reads and how it splits it: the data flags of add_data_args, built
    once from parsed flags or a config (DataSettings.from_dict(vars(args)))."""
    data_dir: str = ""                   # comma-separated data folders
    wanted_words: str = ",".join(COMPETITION_WORDS)
    silence_percentage: float = 10.0
    unknown_percentage: float = 10.0
    validation_percentage: float = 10.0
    testing_percentage: float = 10.0
    split_salt: str = ""
    train_only_dir: list = dataclasses.field(default_factory=list)
    noise_dir: list = dataclasses.field(default_factory=list)
    pseudo_dir: list = dataclasses.field(default_factory=list)
    pseudo_frequency: float = 0.0
    eval_noise_fraction: float = EVAL_NOISE_FRACTION
    seed: int = RANDOM_SEED
    strict: bool = False
    train_on_validation: bool = False
    balance_words: bool = False

    @classmethod
    def from_dict(cls, options):
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in fields and v is not None})


class AudioProcessor:
    """Index, split, decode and augment a keyword-spotting dataset.

    data_index[set] is a list of dicts {'label': label, 'file': path or None}; file None marks a
    silence clip made from background noise. words_list is the model's label order.
    """

    def __init__(self, data_dirs, wanted_words=None, silence_percentage=10.0,
                 unknown_percentage=10.0, validation_percentage=10.0, testing_percentage=10.0,
                 noise_dirs=(), pseudo_dirs=(), pseudo_frequency=0.0,
                 eval_noise_fraction=EVAL_NOISE_FRACTION, train_only_dirs=(),
                 split_salt="", seed=RANDOM_SEED, strict=False, train_on_validation=False,
                 balance_words=False, check_words=True):
        if isinstance(data_dirs, str):
            data_dirs = [d for d in data_dirs.split(",") if d]
        if not data_dirs:
            raise UserError("no data folder given")
        if not 0 <= pseudo_frequency < 1:
            raise UserError(f"pseudo_frequency must be in [0, 1), got {pseudo_frequency}")
        if not (0 <= validation_percentage <= 100 and 0 <= testing_percentage <= 100
                and validation_percentage + testing_percentage <= 100):
            raise UserError("validation_percentage and testing_percentage must be in [0, 100] "
                            f"with a sum <= 100, got {validation_percentage:g} and "
                            f"{testing_percentage:g}")
        if silence_percentage < 0:
            raise UserError(f"silence_percentage must be >= 0, got {silence_percentage:g}")
        self.seed = seed
        self.split_salt = split_salt
        self.strict = strict
        self.pseudo_frequency = pseudo_frequency if pseudo_dirs else 0.0
        self.balance_words = balance_words
        scanned = [scan_data_dir(d) for d in data_dirs]
        for d in train_only_dirs or ():
            scanned.append(dataclasses.replace(scan_data_dir(d), train_only=True))
        self.words_list = self._choose_words(scanned, wanted_words)
        self.word_to_index = {w: i for i, w in enumerate(self.words_list)}
        self._warn_near_words(scanned)
        self.train_on_validation = train_on_validation
        self.data_index = self._build_index(scanned, silence_percentage, unknown_percentage,
                                            validation_percentage, testing_percentage)
        if train_on_validation:  # a final fit: validation still reports, but is not held out
            self.data_index["training"] = self.data_index["training"] + \
                self.data_index["validation"]
        self.pseudo_index = self._pseudo_items([scan_data_dir(d) for d in pseudo_dirs])
        if check_words:
            self._check_words_have_clips(data_dirs)
        noise_files = [f for s in scanned for f in s.noise_files]
        for d in pseudo_dirs:
            pseudo_noise = os.path.join(d, BACKGROUND_NOISE_DIR_NAME)
            if os.path.isdir(pseudo_noise):
                noise_files += [os.path.join(pseudo_noise, f) for f in clips_in(pseudo_noise)]
        for d in noise_dirs or ():
            if not os.path.isdir(d):
                raise UserError(f"noise folder not found: {d}")
            noise_files += [os.path.join(d, f) for f in clips_in(d)]
        self.noise_train, self.noise_eval = self._load_noise(noise_files, eval_noise_fraction)
        self._audio = None   # decoded clips, filled on first use
        self._row = {}       # path -> row in self._audio
        self.soft_target_report = None

    @classmethod
    def from_settings(cls, settings):
        """The processor of a DataSettings (or of a dict of its fields; with train.py's `pack`,
        a wanted word may have images in the pack and no clips)."""
        check_words = True
        if isinstance(settings, dict):
            check_words = not settings.get("pack")
            settings = DataSettings.from_dict(settings)
        s = settings
        return cls(s.data_dir, s.wanted_words, s.silence_percentage, s.unknown_percentage,
                   s.validation_percentage, s.testing_percentage, noise_dirs=s.noise_dir,
                   pseudo_dirs=s.pseudo_dir, pseudo_frequency=s.pseudo_frequency,
                   eval_noise_fraction=s.eval_noise_fraction, train_only_dirs=s.train_only_dir,
                   split_salt=s.split_salt, seed=s.seed, strict=s.strict,
                   train_on_validation=s.train_on_validation, balance_words=s.balance_words,
                   check_words=check_words)

    # ---- indexing -------------------------------------------------------------------------
    @staticmethod
    def _choose_words(scanned, wanted_words):
        if wanted_words is None:
            wanted_words = COMPETITION_WORDS
        if isinstance(wanted_words, str):
            wanted_words = [w for w in wanted_words.split(",") if w]
        if wanted_words == ["all"]:
            found = {w for s in scanned for w in s.words} - {SILENCE_LABEL, UNKNOWN_LABEL}
            wanted_words = sorted(found)
        if not wanted_words:
            raise UserError("empty word list")
        if len(set(wanted_words)) != len(wanted_words):
            raise UserError(f"repeated words in {wanted_words}")
        return [SILENCE_LABEL, UNKNOWN_LABEL] + list(wanted_words)

    def _check_words_have_clips(self, data_dirs):
        """A word the user chose (not the default competition words, which a partial folder may
        lack) with no clip in any folder (train-only and pseudo folders too) is most likely a
        typo: it would train a class that never occurs."""
        if self.words_list[2:] == list(COMPETITION_WORDS):
            return
        found = {item["label"] for items in self.data_index.values() for item in items}
        found |= {item["label"] for item in self.pseudo_index}
        missing = [w for w in self.words_list[2:]
                   if w not in found and w not in (SILENCE_LABEL, UNKNOWN_LABEL)]
        if missing:
            folders = ", ".join(map(str, data_dirs))
            raise UserError(f"--wanted_words {','.join(missing)}: no clips in {folders} (a word "
                            "is the name of its folder)")

    def _warn_near_words(self, scanned):
        """A folder `Yes ` or `YES` is not the word `yes`: its clips count as unknown. Say so."""
        wanted = {w.strip().lower(): w for w in self.words_list[2:]}
        for data_dir in scanned:
            for folder, files in data_dir.words.items():
                word = wanted.get(folder.strip().lower())
                if word and folder != word:
                    print(f"warning: folder {folder!r} in {data_dir.root} is not the word "
                          f"{word!r} (case or spaces differ): its {len(files)} clips count as "
                          f"{UNKNOWN_LABEL}; rename it to use them as {word!r}", file=sys.stderr)

    def _label_of_folder(self, folder):
        if folder == SILENCE_LABEL:
            return SILENCE_LABEL
        return folder if folder in self.word_to_index else UNKNOWN_LABEL

    def _build_index(self, scanned, silence_pct, unknown_pct, val_pct, test_pct):
        rng = np.random.RandomState(self.seed)
        wanted = {s: [] for s in SETS}
        unknown = {s: [] for s in SETS}
        held_out = set()  # speakers of held-out sets: train-only dirs must not leak them
        self._scanned_keys = []  # (key, path) of every clip found, sampled or not
        for data_dir in sorted(scanned, key=lambda d: d.train_only):
            for word, files in data_dir.words.items():
                label = self._label_of_folder(word)
                for fname in files:
                    self._scanned_keys.append((f"{word}/{fname}",
                                               os.path.join(data_dir.root, word, fname)))
                    if data_dir.train_only:
                        if speaker_id(fname) in held_out:
                            continue
                        which = "training"
                    else:
                        which = assign_set(data_dir, word, fname, val_pct, test_pct,
                                           self.split_salt)
                        trained = which == "training" or (which == "validation"
                                                          and self.train_on_validation)
                        if not trained and "_nohash_" in fname:
                            held_out.add(speaker_id(fname))
                    item = {"label": label, "file": os.path.join(data_dir.root, word, fname),
                            "key": f"{word}/{fname}"}
                    (unknown if label == UNKNOWN_LABEL else wanted)[which].append(item)
        # every speaker held out anywhere (before unknown words are sampled): the pack's images
        # and pseudo clips of these speakers must not train either
        self.held_out_speakers = held_out
        for pool in (wanted, unknown):
            pool["training"] = self._without_held_out(pool["training"], "training clips")
        index = {}
        for which in SETS:
            items = wanted[which]
            set_size = sum(1 for it in items if it["label"] != SILENCE_LABEL)
            rng.shuffle(unknown[which])
            if unknown_pct is None or unknown_pct < 0:
                items += unknown[which]
            else:
                items += unknown[which][:int(math.ceil(set_size * unknown_pct / 100))]
            silence_size = int(math.ceil(set_size * silence_pct / 100))
            items += [{"label": SILENCE_LABEL, "file": None} for _ in range(silence_size)]
            rng.shuffle(items)
            index[which] = items
        return index

    def _without_held_out(self, items, what):
        """items less those of held-out speakers (said on stderr): a folder with split lists and
        one split by the speaker hash can put one speaker on both sides, and a pseudo pool can
        hold a held-out speaker's clip."""
        kept = [it for it in items if "_nohash_" not in os.path.basename(it["file"] or "")
                or speaker_id(os.path.basename(it["file"])) not in self.held_out_speakers]
        if len(kept) < len(items):
            print(f"warning: {len(items) - len(kept)} {what} of held-out speakers left out of "
                  "training", file=sys.stderr)
        return kept

    def _pseudo_items(self, scanned):
        items = []
        for data_dir in scanned:
            sources = read_pseudo_sources(data_dir.root)
            for folder, files in data_dir.words.items():
                label = self._label_of_folder(model_label(folder))
                items += [{"label": label, "file": os.path.join(data_dir.root, folder, f),
                           "key": sources.get(f"{folder}/{f}", f"{folder}/{f}"),
                           "pseudo": True} for f in files]
        return self._without_held_out(items, "pseudo clips")

    def _load_noise(self, files, eval_fraction):
        """Split every noise recording in time: the head trains, the tail makes eval silence."""
        train, evaluation, errors = [], [], []
        for f in files:
            try:
                noise = read_wav(f, num_samples=None)
            except AudioError as e:
                if self.strict:
                    raise
                errors.append(e)
                continue
            cut = int(len(noise) * (1 - eval_fraction))
            for part, pool in ((noise[:cut], train), (noise[cut:], evaluation)):
                if len(part):
                    pool.append(np.resize(part, max(len(part), CLIP_SAMPLES)))
        warn_skipped(errors, "noise files")
        return train, evaluation

    # ---- queries --------------------------------------------------------------------------
    def set_size(self, mode):
        return len(self.data_index[mode])

    def label_counts(self, mode):
        counts = {w: 0 for w in self.words_list}
        for item in self.data_index[mode]:
            counts[item["label"]] += 1
        return counts

    def speakers(self, mode):
        return {speaker_id(it["file"]) for it in self.data_index[mode]
                if it["file"] and "_nohash_" in it["file"]}

    # ---- decoding -------------------------------------------------------------------------
    def _decode_all(self):
        if self._audio is not None:
            return
        files = sorted({it["file"] for which in SETS for it in self.data_index[which]
                        if it["file"]} | {it["file"] for it in self.pseudo_index})
        audio, kept = read_many(files, strict=self.strict, progress=True)
        kept_files = {files[i] for i in kept}
        self._row = {files[i]: row for row, i in enumerate(kept)}
        # int16 halves the memory of the cache; the clips are 16-bit to begin with
        self._audio = np.round(audio * 32767).astype(np.int16)
        for which in SETS:
            self.data_index[which] = [it for it in self.data_index[which]
                                      if it["file"] is None or it["file"] in kept_files]
        self.pseudo_index = [it for it in self.pseudo_index if it["file"] in kept_files]

    def _rows_and_labels(self, items):
        rows = np.array([self._row[it["file"]] if it["file"] else -1 for it in items], np.int32)
        labels = np.array([self.word_to_index[it["label"]] for it in items], np.int32)
        return rows, labels

    def _augment(self, rows, seed, noise, augmentation, part=None):
        """Augmented float clips of cache rows (-1: a silence clip made from noise)."""
        clips = self._audio[np.maximum(rows, 0)]
        return augment_batch(clips, rows < 0, seed, noise, augmentation, scale=1 / 32767,
                             part=part)

    # ---- batches --------------------------------------------------------------------------
    def steps_per_epoch(self, batch_size):
        """Training batches per epoch; a pseudo pool adds examples on top of the labelled ones."""
        return math.ceil(self._epoch_length() / batch_size)

    def _epoch_length(self):
        n = len(self.data_index["training"])
        if self.pseudo_frequency and self.pseudo_index:
            return math.ceil(n / (1 - self.pseudo_frequency))
        return n

    def dataset(self, mode, batch_size=64, augmentation=None, seed=None, initial_epoch=0,
                epochs=None, steps_per_epoch=None, soft_targets=None, replicas=None):
        """A tf.data.Dataset of (audio float32 [B, 16000], labels) for model.fit.

        Training: epochs initial_epoch..epochs-1 back to back (None: forever), each of
        steps_per_epoch batches (default: one pass), shuffled and augmented from a seed and the
        epoch number alone, so a resumed run sees exactly the batches an uninterrupted run would.
        With a pseudo pool each example comes from it with probability pseudo_frequency. Other
        sets come once, in a fixed order, with silence made from held-out noise: the same every
        epoch.

        labels are int32 [B]; with soft_targets ({fname: probabilities over words_list}, see
        match_soft_targets for how fnames name clips) they are float32 [B, 1 + classes]: the
        label, then the clip's soft target or -1s.

        replicas=(first, count, total) (training only): the input of `count` of `total` replicas
        under tf.distribute, from replica `first` on. Each global batch of batch_size is cut
        into `total` consecutive slices (sizes differ by one at most when it does not divide)
        and this dataset yields slices first..first+count-1 of every batch in turn, each
        augmented exactly as in the whole batch: the replicas together see every example of an
        epoch once, and the same examples, batches and augmentation as one device.
        """
        import tensorflow as tf

        self._decode_all()
        training = mode == "training"
        augmentation = augmentation or Augmentation()
        seed = self.seed if seed is None else seed
        rows, labels = self._rows_and_labels(self.data_index[mode])
        if len(rows) == 0:
            raise UserError(f"the {mode} set is empty")
        if training:
            p_rows, p_labels = self._rows_and_labels(self.pseudo_index)
            if not self.pseudo_frequency or not len(p_rows):
                p_rows, p_labels = rows[:1], labels[:1]  # never drawn
            last = tf.data.Dataset.range(initial_epoch, epochs) if epochs else None
            epoch_ids = last if last is not None else tf.data.Dataset.range(initial_epoch, 1 << 40)
            steps = steps_per_epoch or self.steps_per_epoch(batch_size)
            ds = epoch_ids.flat_map(lambda epoch: self._training_epoch(
                epoch, rows, labels, p_rows, p_labels, batch_size, seed).repeat().take(steps))
            if replicas is not None:
                ds = ds.flat_map(lambda batch, key: replica_slices(batch, key, *replicas))
        else:
            ds = tf.data.Dataset.from_tensor_slices((rows, labels)).batch(batch_size)
            ds = ds.enumerate().map(lambda i, batch: (batch, i))  # fixed noise per batch
        noise = self.noise_train if training else self.noise_eval
        batch_fn = self._batch_fn(noise, augmentation if training else None,
                                  self._soft_table(soft_targets))
        ds = ds.map(batch_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.prefetch(tf.data.AUTOTUNE)

    def balance_weights(self, labels):
        """Per-example drawing weights that give every wanted word the same expected share of
        an epoch (the mean count of the words), or None when balance_words is off. Unknown and
        silence keep their share. Corpora differ wildly per word (the extra set: 2,100 `down`,
        17 `on`), so an epoch drawn this way sees all words equally often, while across epochs
        every clip of a large word still gets drawn."""
        if not self.balance_words:
            return None
        counts = np.bincount(labels, minlength=len(self.words_list)).astype(np.float64)
        words = [self.word_to_index[w] for w in self.words_list
                 if w not in (SILENCE_LABEL, UNKNOWN_LABEL) and counts[self.word_to_index[w]]]
        scale = np.ones_like(counts)
        if words:
            scale[words] = counts[words].mean() / counts[words]
        return scale[labels]

    def _training_epoch(self, epoch, rows, labels, p_rows, p_labels, batch_size, seed):
        import tensorflow as tf

        n = len(rows)
        length = self._epoch_length()
        key = tf.stack([tf.constant(seed, tf.int64), epoch])
        index = tf.range(length, dtype=tf.int64)
        weights = self.balance_weights(labels)
        if weights is None:
            order = tf.random.experimental.index_shuffle(index % n, key, n - 1)
        else:  # n draws with replacement, by the weights (inverse CDF)
            cdf = tf.constant(np.cumsum(weights) / weights.sum(), tf.float64)
            u = tf.random.stateless_uniform([length], key + 2, dtype=tf.float64)
            order = tf.minimum(tf.searchsorted(cdf, u, side="right", out_type=tf.int64), n - 1)
        from_pseudo = tf.random.stateless_uniform([length], key, dtype=tf.float32) < \
            self.pseudo_frequency
        pick = tf.random.stateless_uniform([length], key + 1, 0, len(p_rows), dtype=tf.int64)
        epoch_rows = tf.where(from_pseudo, tf.gather(p_rows, pick), tf.gather(rows, order))
        epoch_labels = tf.where(from_pseudo, tf.gather(p_labels, pick), tf.gather(labels, order))
        ds = tf.data.Dataset.from_tensor_slices((epoch_rows, epoch_labels)).batch(batch_size)
        # one augmentation seed per (seed, epoch, batch)
        return ds.enumerate().map(lambda i, batch: (batch, (seed * 1_000_003 + epoch) * 65_536 + i))

    def match_soft_targets(self, soft_targets):
        """{clip path: fname} for the clips that soft_targets names.

        A clip's fname is its path relative to its data folder (`yes/0a7c2a8d_nohash_0.wav`,
        what make_submission.py writes for that folder), or for a pseudo-pool clip the fname
        it was cut from (create_pseudo_with_thresh.py records it). A bare file name also
        matches, where it names one clip only: `X.wav` beside `yes/X.wav` and `no/X.wav` is
        refused, as is any fname that would give two clips the same target."""
        indexed = {it["file"] for which in SETS for it in self.data_index[which] if it["file"]}
        indexed |= {it["file"] for it in self.pseudo_index}
        # ambiguity is judged on every clip found, not only the ones this seed sampled
        keys = {path: key for key, path in self._scanned_keys}
        keys.update((it["file"], it["key"]) for it in self.pseudo_index)
        by_key, by_base = {}, {}
        for path, key in keys.items():
            by_key.setdefault(key, []).append(path)
            by_base.setdefault(key.rsplit("/", 1)[-1], []).append(path)
        matched = {}
        for fname in soft_targets:
            paths = by_key.get(fname) or ([] if "/" in fname else by_base.get(fname, []))
            if len(paths) > 1:
                raise UserError(f"teacher fname {fname!r} names {len(paths)} clips ("
                                f"{paths[0]}, {paths[1]}, ...): give each row the clip's path "
                                "relative to its data folder")
            paths = [p for p in paths if p in indexed]
            if paths:
                if paths[0] in matched:
                    raise UserError(f"teacher fnames {matched[paths[0]]!r} and {fname!r} both "
                                    f"name {paths[0]}")
                matched[paths[0]] = fname
        return matched

    def _soft_table(self, soft_targets):
        """Soft targets by cache row: float32 [rows + 1, classes], -1 where a clip has none."""
        if soft_targets is None:
            return None
        table = -np.ones((len(self._audio) + 1, len(self.words_list)), np.float32)
        matched = self.match_soft_targets(soft_targets)
        for path, fname in matched.items():
            if path in self._row:
                table[self._row[path]] = soft_targets[fname]
        pseudo = {it["file"] for it in self.pseudo_index}
        training = {it["file"] for it in self.data_index["training"] if it["file"]}
        self.soft_target_report = {
            "teacher_rows": len(soft_targets), "rows_used": len(matched),
            "training_clips": len(training), "training_clips_with_targets": len(
                training & set(matched)), "pseudo_clips": len(pseudo),
            "pseudo_clips_with_targets": len(pseudo & set(matched))}
        return table

    def _batch_fn(self, noise, augmentation, soft_table=None):
        import tensorflow as tf

        soft = None if soft_table is None else tf.constant(soft_table)
        bank = NoiseBank(noise)
        samples = tf.constant(bank.samples)
        mode = shift_mode(augmentation)

        def gather_and_draw(rows, seed, start, end):
            draws = augmentation_draws(len(rows), rows < 0, seed, bank, augmentation,
                                       scale=1 / 32767)
            return (self._audio[np.maximum(rows[start:end], 0)],
                    *(d[start:end] for d in draws))

        def load(batch, seed, part=None):
            rows, labels = batch
            start, end = (0, tf.shape(rows)[0]) if part is None else part
            clips, *draws = tf.numpy_function(
                gather_and_draw, [rows, seed, start, end],
                [tf.int16, tf.float32, tf.float32, tf.float32, tf.int32, tf.int32],
                stateful=False)
            clips = apply_augmentation(tf.ensure_shape(clips, [None, CLIP_SAMPLES]),
                                       *(tf.ensure_shape(d, [None]) for d in draws),
                                       samples, mode)
            rows, labels = rows[start:end], labels[start:end]
            if soft is None:
                return clips, labels
            targets = tf.gather(soft, tf.where(rows < 0, tf.shape(soft)[0] - 1, rows))
            return clips, tf.concat([tf.cast(labels, tf.float32)[:, None], targets], axis=1)

        return load

    def get_data(self, mode, how_many=-1, offset=0, augmentation=None, seed=0):
        """Numpy batch API: (audio float32 [n, 16000], labels int32 [n]) from a set's items.

        augmentation=None gives clean clips (eval noise in silence); pass an Augmentation to
        augment as in training.
        """
        self._decode_all()
        items = self.data_index[mode]
        items = items[offset:] if how_many < 0 else items[offset:offset + how_many]
        rows, labels = self._rows_and_labels(items)
        noise = self.noise_train if augmentation else self.noise_eval
        return self._augment(rows, seed, noise, augmentation), labels


def read_pseudo_sources(folder):
    """{`<label>/<file>`: fname it was cut from} of a pseudo pool ({} when it has no record)."""
    path = os.path.join(folder, PSEUDO_SOURCES_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"file", "fname"} <= set(rows[0]):
        raise UserError(f"{path}: needs the columns file,fname")
    return {row["file"]: row["fname"] for row in rows}


def add_data_args(parser, data_dir_required=True):
    """The dataset flags train.py and friends share."""
    parser.add_argument("--data_dir", required=data_dir_required,
                        help="comma-separated data folders (Speech Commands, Kaggle train or "
                             "official test-set layout)")
    parser.add_argument("--wanted_words", default=",".join(COMPETITION_WORDS),
                        help="comma-separated words to recognise, or 'all' for every word folder")
    parser.add_argument("--silence_percentage", type=float, default=10.0,
                        help="silence clips as a percentage of the wanted-word clips of each set")
    parser.add_argument("--unknown_percentage", type=float, default=10.0,
                        help="unknown-word clips as a percentage of the wanted-word clips "
                             "(negative: all of them)")
    parser.add_argument("--validation_percentage", type=float, default=10.0,
                        help="speakers held out for validation when no lists are present")
    parser.add_argument("--testing_percentage", type=float, default=10.0,
                        help="speakers held out for testing when no lists are present")
    parser.add_argument("--split_salt", default="",
                        help="salt for the speaker hash: '' is the tutorial's split, any other "
                             "string draws another speaker-disjoint split")
    parser.add_argument("--train_only_dir", action="append", default=[],
                        help="extra data folder whose clips all train, minus held-out speakers "
                             "(synthetic speech, other corpora; repeatable)")
    parser.add_argument("--noise_dir", action="append", default=[],
                        help="extra folder of background noise WAVs (repeatable)")
    parser.add_argument("--balance_words", action=argparse.BooleanOptionalAction, default=None,
                        help="draw training epochs so that every wanted word is equally "
                             "frequent (corpora with uneven word counts)")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first unreadable file instead of skipping it")
    return parser
