"""Count the labelled clips of data folders per class and set, as training will split them
(kws/data.py: AudioProcessor).

    python input_data.py --data_dir data/synthetic/train/audio     # prints the class counts per set
"""

import argparse
import sys

from kws.augment import RANDOM_SEED
from kws.common import run_cli
from kws.data import AudioProcessor, add_data_args
from kws.folders import SETS


def main(argv=None):
    parser = add_data_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    parser.add_argument("--seed", type=int, default=RANDOM_SEED)
    args = parser.parse_args(argv)
    processor = AudioProcessor.from_settings(vars(args))
    print("label".ljust(12) + "".join(s.rjust(12) for s in SETS))
    counts = {s: processor.label_counts(s) for s in SETS}
    for label in processor.words_list:
        print(label.ljust(12) + "".join(str(counts[s][label]).rjust(12) for s in SETS))
    print("total".ljust(12) + "".join(str(processor.set_size(s)).rjust(12) for s in SETS))
    print("speakers".ljust(12) + "".join(str(len(processor.speakers(s))).rjust(12) for s in SETS))
    print(f"noise: {len(processor.noise_train)} recordings", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
