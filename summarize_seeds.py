"""Summarise runs of one recipe with different seeds: mean and spread of each figure, as JSON.

    python summarize_seeds.py data/real/results.json data/real_s2/results.json \
        data/real_s3/results.json --out logs/real_seeds.json
"""

import argparse
import json

from kws.common import atomic_write_text, run_cli
from kws.seeds import summarize_runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", help="results.json of each run (real.py)")
    parser.add_argument("--out", help="write the summary here as JSON (also printed)")
    args = parser.parse_args(argv)
    summary = summarize_runs(args.results)
    text = json.dumps(summary, indent=2)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    run_cli(main)
