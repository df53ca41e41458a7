"""The stream protocol, independent of the web framework: a binary frame of int16 audio gets a
result message; a text frame is a settings message, checked before it is parsed."""

import dataclasses
import json

import numpy as np

from kws import SAMPLE_RATE
from kws.common import UserError

MAX_FRAME_SAMPLES = SAMPLE_RATE  # one second of audio per WebSocket frame at most
MAX_TEXT_BYTES = 4096            # a settings message is ~150 bytes
MAX_JSON_DEPTH = 2               # a settings message is one flat object
PAGE_SETTINGS = ("detection_threshold", "average_window_ms", "suppression_ms", "minimum_count")


class ProtocolError(Exception):
    """A client message the server does not accept; closes that connection only."""


def decode_audio_frame(data):
    """float32 samples of one binary frame of int16 little-endian PCM, or ProtocolError."""
    if len(data) == 0 or len(data) % 2:
        raise ProtocolError(f"audio frames must hold whole int16 samples, got {len(data)} bytes")
    if len(data) // 2 > MAX_FRAME_SAMPLES:
        raise ProtocolError(f"audio frame of {len(data) // 2} samples; at most "
                            f"{MAX_FRAME_SAMPLES} (one second) a frame")
    return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0


def json_depth(text):
    """How deep brackets nest in text (strings included: an over-estimate is safe), found
    without parsing it, so that deep nesting is refused before json.loads recurses."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def refuse_constant(name):
    raise ValueError(f"{name} is not a number JSON allows")


def settings_changes(text):
    """The recognizer settings a text frame asks for, checked, or ProtocolError. Their ranges
    are StreamSettings' (Spotter.update_settings raises UserError)."""
    if len(text) > MAX_TEXT_BYTES:
        raise ProtocolError(f"text frame of {len(text)} characters; a settings message is at "
                            f"most {MAX_TEXT_BYTES}")
    if json_depth(text) > MAX_JSON_DEPTH:
        raise ProtocolError("text frames must be one flat JSON object")
    try:
        message = json.loads(text, parse_constant=refuse_constant)
    except ValueError:
        raise ProtocolError("text frames must be JSON") from None
    if not isinstance(message, dict) or message.get("type") != "settings":
        raise ProtocolError('text frames must be {"type": "settings", ...}')
    changes = {k: v for k, v in message.items() if k != "type"}
    unknown = sorted(set(changes) - set(PAGE_SETTINGS))
    if unknown:
        raise ProtocolError(f"unknown settings {unknown}; the page may change {PAGE_SETTINGS}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in changes.values()):
        raise ProtocolError("settings must be numbers")
    return changes


def query_settings(query, defaults):
    """The settings of an upload's query string, checked against StreamSettings' ranges."""
    unknown = sorted(set(query) - set(PAGE_SETTINGS))
    if unknown:
        raise UserError(f"unknown settings {unknown}; an upload may set {PAGE_SETTINGS}")
    try:
        changes = {k: float(v) for k, v in query.items()}
    except ValueError:
        raise UserError("settings must be numbers") from None
    dataclasses.replace(defaults, **changes)  # raises UserError naming the bad value
    return changes


def feed_frame(spotter, samples):
    """The result message of one audio frame: every hop's smoothed scores and the detections."""
    hops = []

    def on_scores(time_ms, probs, smoothed):
        scores = probs if smoothed is None else smoothed
        hops.append([round(time_ms), [round(float(p), 3) for p in scores]])

    found = spotter.feed(samples, on_scores)
    return {"type": "result", "audio_ms": round(spotter.heard_ms), "hops": hops,
            "detections": [detection_dict(d) for d in found]}


def detection_dict(d):
    return {"label": d.label, "time_ms": round(d.time_ms), "score": round(float(d.score), 4)}
