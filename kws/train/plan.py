"""What a training run starts from, found before TensorFlow starts (so a bad data folder or a
run that cannot resume fails at once): its folders, whether this process is the chief, the
state to resume from, and the AudioProcessor over its data."""

import dataclasses
import os

from kws.data import AudioProcessor
from kws.train.run_dir import read_resume_state


@dataclasses.dataclass
class RunPlan:
    exp_dir: str  # checkpoints/<exp>: the chief writes here, every worker resumes from here
    log_dir: str  # logs/<exp>
    is_chief: bool
    resume_state: dict | None  # state.json of the epoch to resume from; None: a fresh run
    processor: AudioProcessor


def plan_run(args):
    is_chief = args.cluster is None or args.cluster["is_chief"]
    exp_dir = os.path.join(args.checkpoint_dir, args.exp_name)
    log_dir = os.path.join(args.log_dir, args.exp_name)
    resume_state = read_resume_state(exp_dir, args, tidy=is_chief)
    processor = AudioProcessor.from_settings(vars(args))
    return RunPlan(exp_dir, log_dir, is_chief, resume_state, processor)
