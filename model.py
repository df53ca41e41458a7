"""Describe the model zoo (kws/zoo): every model with its params and MACs, one model's summary,
or a saved checkpoint's labels and stats.

    python model.py --list                               # every model with params and MACs
    python model.py --model seed195 --num_classes 12     # summary, params and MACs of one model
    python model.py --model edge_tcs --option width=1    # builder options as KEY=VALUE
    python model.py --checkpoint checkpoints/smoke/last.keras   # a saved model's labels and stats
"""

import argparse
import ast

from kws.checkpoint import load_checkpoint, model_stats
from kws.common import UserError, run_cli
from kws.zoo import MODELS, build_model


def parse_option(text):
    """'width=2' -> ('width', 2); values are Python literals, else strings."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UserError(f"--option wants KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", "--model", dest="model", default="edge_bcres",
                        help="architecture name (see --list)")
    parser.add_argument("--num_classes", type=int, default=12, help="number of output classes")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="builder option, repeatable (e.g. width=2, hop_ms=20)")
    parser.add_argument("--list", action="store_true", help="list every model with its stats")
    parser.add_argument("--quiet", action="store_true", help="no layer-by-layer summary")
    parser.add_argument("--checkpoint", help="describe this saved .keras checkpoint instead "
                        "(labels.txt beside it), loaded in safe mode")
    args = parser.parse_args(argv)
    options = dict(parse_option(text) for text in args.option)
    if args.checkpoint:
        model, labels = load_checkpoint(args.checkpoint)
        if not args.quiet:
            model.summary()
        stats = model_stats(model)
        print(f"checkpoint {args.checkpoint}: {len(labels)} labels ({', '.join(labels)}); "
              f"params {stats['params']:,}  MACs/clip {stats['macs']:,}")
        return 0
    if args.list:
        print(f"{'model':<14} {'params':>10} {'MACs':>13} {'float bytes':>12}")
        for name in MODELS:
            stats = model_stats(build_model(name, args.num_classes))
            print(f"{name:<14} {stats['params']:>10,} {stats['macs']:>13,} "
                  f"{stats['float_bytes']:>12,}")
        return 0
    model = build_model(args.model, args.num_classes, **options)
    if not args.quiet:
        model.summary()
    stats = model_stats(model)
    print(f"model {args.model}: params {stats['params']:,}  MACs/clip {stats['macs']:,}  "
          f"float bytes {stats['float_bytes']:,}")
    return 0


if __name__ == "__main__":
    run_cli(main)
