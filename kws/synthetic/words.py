"""Word lists: the default words, the unseen words of the test set's `unknown` clips, and the
checks on a comma-separated list from the command line."""

import re

from kws.common import UserError

V1_WORDS = ("bed bird cat dog down eight five four go happy house left marvin nine no off on one "
            "right seven sheila six stop three tree two up wow yes zero").split()
# Words for the test set's `unknown` clips; those in --words are left out.
UNSEEN_WORDS = ("backward follow forward learn visual apple water table window music paper river "
                "garden yellow orange purple hello thanks maybe never always zebra pencil rocket "
                "coffee little number person start stand dig bet bat sit yet dawn lift often gone "
                "top cup net known button hop ten now").split()
# Lookalikes: words that hold a command's sound with more sound around it (espeak-ng's phonemes
# of the word contain the command's; tests/test_lookalikes.py checks it), said as unknown so a
# model learns that "nobody" is not "no". {command: (training words, validation words)}: the
# validation words make the validation streams' negatives hold such sounds, as real speech
# does. No word holds a syllable of the held-out phrases (jarvis, snowboy, view glass).
LOOKALIKES = {
    "yes": (("yesterday", "yesteryear"), ("yeses",)),
    "no": (("nobody", "notice", "noble", "piano", "casino", "nomad", "volcano"),
           ("domino", "denote", "nova")),
    "up": (("upper", "upset", "puppy", "supper", "setup", "upload", "hiccup", "update"),
           ("buttercup", "upward", "pickup")),
    "down": (("download", "downtown", "sundown", "countdown", "downward"),
             ("downstairs", "showdown", "lockdown")),
    "left": (("leftover", "lefty", "leftward", "lefthanded"), ("leftist", "leftmost")),
    "right": (("writer", "righteous", "bright", "copyright", "rightful", "outright"),
              ("playwright", "alright")),
    "on": (("honest", "online", "bonfire", "upon", "onward"), ("bonnet", "gonad")),
    "off": (("offer", "officer", "scoff", "offset", "offspring"), ("takeoff", "payoff", "office")),
    "stop": (("stopwatch", "doorstop", "nonstop", "stopper"), ("backstop", "shortstop")),
    "go": (("gopher", "goal", "ago", "bingo", "golden", "cargo", "going"),
           ("logo", "mango", "undergo")),
}
BAD_WORD_RE = re.compile(r"[/\\\x00-\x1f]|^[._ ]|\s$")  # unsafe as a folder name


def parse_words(text, what="--words"):
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        raise UserError(f"empty word list in {what}")
    bad = [w for w in words if BAD_WORD_RE.search(w)]
    if bad:
        raise UserError(f"bad word(s) in {what}: {', '.join(map(repr, bad))} (a word becomes a "
                        "folder name: no slashes, control characters, or leading '.' or '_')")
    if len(set(words)) != len(words):
        raise UserError(f"repeated words in {what}")
    reserved = [w for w in words if w.lower() in ("silence", "unknown")]
    if reserved:
        raise UserError(f"{', '.join(reserved)} in {what}: 'silence' and 'unknown' are labels")
    return words


def choose(requested, available, what):
    """'all' -> available; otherwise the comma-separated names, each of which must exist."""
    if requested.strip() == "all":
        return list(available)
    if requested.strip() == "none":
        return []
    names = [n.strip() for n in requested.split(",") if n.strip()]
    if not names:
        raise UserError(f"empty {what} list")
    lookup = {a.lower(): a for a in available}
    unknown = [n for n in names if n.lower() not in lookup]
    if unknown:
        raise UserError(f"unknown {what}(s) {', '.join(unknown)}; available: "
                        f"{', '.join(available)}")
    return list(dict.fromkeys(lookup[n.lower()] for n in names))


def lookalike_words(which):
    """The lookalike words of one side ('training' or 'validation'), in a fixed order."""
    side = {"training": 0, "validation": 1}[which]
    return [word for pair in LOOKALIKES.values() for word in pair[side]]
