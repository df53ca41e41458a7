"""A stream's score traces: every hop's probabilities kept as the Spotter reports them, written
as a CSV (label_stream.py --scores_csv) or drawn with the detections (--plot; matplotlib is
imported only to draw, the Pi needs none)."""

import numpy as np

from kws.common import atomic_path


class ScoreTrace:
    """A Spotter's on_scores callback that keeps what was asked for: the smoothed scores (or
    the probabilities before smoothing starts) to plot, the probabilities to write."""

    def __init__(self, keep_smoothed, keep_probs):
        self.keep_smoothed, self.keep_probs = keep_smoothed, keep_probs
        self.times, self.smoothed = [], []   # what plot_traces draws
        self.hops = []                       # (time_ms, probabilities): what scores_csv writes

    def __call__(self, time_ms, probs, smoothed):
        if self.keep_smoothed:
            self.times.append(time_ms)
            self.smoothed.append(probs if smoothed is None else smoothed)
        if self.keep_probs:
            self.hops.append((time_ms, np.array(probs, np.float32)))


def scores_csv(hops, labels):
    """The text of a scores CSV: time_ms,<label>..., each hop's probabilities to 8 decimals."""
    rows = [f"{t:.0f}," + ",".join(f"{p:.8f}" for p in probs) for t, probs in hops]
    return "\n".join(["time_ms," + ",".join(labels)] + rows) + "\n"


def plot_traces(path, times, scores, labels, detections, threshold):
    """A PNG of the smoothed score of every word over time, the threshold and the detections."""
    import matplotlib  # heavy, and absent on the Pi: only --plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(8, min(24, times[-1] / 8000)), 4))
    seconds = np.asarray(times) / 1000
    for i, label in enumerate(labels):
        if not label.startswith("_"):
            ax.plot(seconds, scores[:, i], lw=0.8, label=label)
    ax.axhline(threshold, color="grey", ls="--", lw=0.8)
    for d in detections:
        ax.axvline(d.time_ms / 1000, color="black", lw=0.5, alpha=0.5)
        ax.text(d.time_ms / 1000, 1.02, d.label, rotation=90, fontsize=7, ha="center",
                va="bottom")
    ax.set_ylim(0, 1.15)
    ax.set_xlabel("seconds")
    ax.set_ylabel("smoothed score")
    ax.legend(ncol=5, fontsize=7, loc="upper right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
