"""Jobs: one speaker's clips, said in order in a fresh process; chunks of jobs per process."""

import dataclasses
import os
import sys

import numpy as np
from tqdm import tqdm

from kws.audio import write_wav
from kws.synthetic.espeak import Espeak
from kws.synthetic.forking import run_forked
from kws.synthetic.piper import Piper
from kws.synthetic.render import audible, render_clip, render_silence, utterance_text
from kws.synthetic.speakers import PiperSpeaker, Speaker

JOBS_PER_CHUNK = 8  # speakers said by one fresh process; part of the recipe (changes the bytes)


@dataclasses.dataclass
class Job:
    speaker: Speaker  # None for silence clips
    clips: list       # [(path relative to out_dir, word or None, per-clip seed)], said in order
    options: dict


def job_paths(jobs, out_dir):
    return [os.path.join(out_dir, rel) for job in jobs for rel, _, _ in job.clips]


def say(engines, speaker, word, rng, seed):
    """One utterance of word by speaker: (float32 samples, sample rate). engines caches the
    process's espeak-ng and Piper models."""
    text = utterance_text(word, rng)
    if isinstance(speaker, PiperSpeaker):
        if speaker.model not in engines:
            engines[speaker.model] = Piper(speaker.model)
        engine = engines[speaker.model]
        scale = speaker.length_scale * rng.uniform(0.95, 1.05)
        return engine.synth(text, speaker.speaker, scale), engine.sample_rate
    engine = engines["espeak"]
    # every repetition differs a little, as a person's would
    engine.set_prosody(np.clip(speaker.pitch + rng.integers(-4, 5), 0, 99),
                       speaker.pitch_range,
                       np.clip(speaker.rate * rng.uniform(0.93, 1.07), 80, 450))
    return engine.synth(text, seed), engine.sample_rate


def run_chunk(jobs, out_dir, skip_existing):
    """Write the clips of a chunk of jobs, in order, in this (fresh) process; return the count
    written. The whole chunk is said even when some files exist: espeak-ng's state after each
    utterance shapes the next one, so skipping would change the bytes of the rest."""
    engines = {}
    written = 0
    for job in jobs:
        speaker = job.speaker
        if isinstance(speaker, Speaker):
            if "espeak" not in engines:
                engines["espeak"] = Espeak()
            if not engines["espeak"].set_voice(speaker.espeak_name):
                raise RuntimeError(f"espeak-ng has no voice {speaker.espeak_name!r}")
        for rel, word, seed in job.clips:
            rng = np.random.default_rng(seed)
            if speaker is None:
                clip = render_silence(rng)
            else:
                speech, rate = say(engines, speaker, word, rng, seed)
                if not audible(speech, rate):
                    raise RuntimeError(f"no audio for {word!r} from {speaker.describe()}")
                clip = render_clip(speech, rate, rng, job.options)
            path = os.path.join(out_dir, rel)
            if not (skip_existing and os.path.isfile(path)):
                write_wav(path, clip)
                written += 1
    return written


def chunked(jobs, size=JOBS_PER_CHUNK):
    """Fixed chunks of the job list: what one fresh process says, whatever --workers is."""
    return [jobs[i:i + size] for i in range(0, len(jobs), size)]


def run_jobs(jobs, out_dir, skip_existing, workers, progress=True):
    """Say every chunk of jobs in its own forked process, workers at a time; return the count
    of files written. With skip_existing, chunks whose files all exist are skipped."""
    chunks = chunked(jobs)
    if skip_existing:
        chunks = [c for c in chunks if not all(os.path.isfile(p) for p in job_paths(c, out_dir))]
    if not chunks:
        return 0
    sizes = [sum(len(job.clips) for job in chunk) for chunk in chunks]
    tqdm.monitor_interval = 0  # no monitor thread: we fork from this process
    with tqdm(total=sum(sizes), desc="clips", unit="clip", disable=not progress,
              mininterval=0.5, file=sys.stderr) as bar:
        counts = run_forked([(run_chunk, (chunk, out_dir, skip_existing)) for chunk in chunks],
                            workers, lambda index, _: bar.update(sizes[index]))
    return sum(counts)
