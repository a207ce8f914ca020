"""Hypothesis strategies for what a client may send over ``/ws/v1/live``: valid messages,
near-valid ones (one thing wrong) and garbage, as text and binary frames."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

MESSAGE_TYPES = ["text", "ping", "audio_end", "activity_start", "activity_end", "close"]
# Everything a JSON value can be, lone surrogates and control characters included.
any_text = st.text(st.characters(codec=None, categories=None), max_size=200)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), any_text)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=12,
)


def valid_messages(*, closing: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    kinds = MESSAGE_TYPES if closing else [k for k in MESSAGE_TYPES if k != "close"]
    text = st.builds(
        lambda t, tc: {"type": "text", "text": t, "turn_complete": tc},
        # Printable text: control characters alone are sanitised away (a bad_message).
        st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=300).filter(
            str.strip
        ),
        st.booleans(),
    )
    ids = st.one_of(st.none(), st.booleans(), st.integers(),
                    st.floats(allow_nan=False, allow_infinity=False), any_text)  # fmt: skip
    ping = st.builds(lambda i: {"type": "ping", "id": i}, ids)
    simple = st.sampled_from([k for k in kinds if k not in ("text", "ping")]).map(
        lambda k: {"type": k}
    )
    return st.one_of(text, ping, simple)


near_valid_messages = st.one_of(
    # a known type with a field of the wrong type, or an unknown type
    st.builds(lambda v: {"type": "text", "text": v}, json_values),
    st.builds(lambda v: {"type": "text", "text": "hi", "turn_complete": v}, json_values),
    st.builds(lambda v: {"type": "ping", "id": v}, json_values),
    st.builds(lambda f: {"type": "ping", "id": f}, st.floats()),  # NaN, Infinity
    st.builds(lambda t: {"type": t}, any_text.filter(lambda t: t not in MESSAGE_TYPES)),
    st.builds(lambda v: {"type": v}, json_values),
    st.just({"type": "text", "text": "\x00\ud800 \x1b"}),
)


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


text_frames = st.one_of(
    valid_messages().map(_dumps),
    near_valid_messages.map(_dumps),
    json_values.map(_dumps),  # JSON that is not an object, or not a message
    any_text,  # not JSON at all
    st.integers(1, 3_000).map(lambda n: "[" * n + "]" * n),  # deep nesting
)
binary_frames = st.one_of(
    st.binary(min_size=2, max_size=3_200).filter(lambda b: len(b) % 2 == 0),  # audio
    st.binary(max_size=40_000),  # any bytes: odd, empty, oversize
)
frames = st.one_of(text_frames, binary_frames)
