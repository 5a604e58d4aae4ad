"""Property tests of the one JSON decoder (`base/decoding.py`) as the socket and HTTP bodies use it: whatever
arrives, a value, a named protocol error or a shape error, never a crash."""

from __future__ import annotations

import json

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from api.schemas import BookingBody
from base.decoding import decode
from base.errors import ProtocolError
from dispatch import frames

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
frame_types = st.sampled_from(["heartbeat", "ack", "accept", "decline", "cancel", "teleport", 1, None])
frame_like = st.fixed_dictionaries(
    {"type": frame_types},
    optional={
        "request_id": st.uuids().map(str) | json_values,
        "offer_id": st.text(max_size=120) | json_values,
        "attempt": st.integers() | json_values,
        "reason": st.text(max_size=300) | json_values,
    },
)


def _decodes_or_names_the_error(raw: str | bytes) -> None:
    try:
        decoded = frames.decode(raw)
    except ProtocolError as error:
        assert error.code in {"bad_message", "unknown_type", "invalid_field"}
        assert error.message
    else:
        assert isinstance(decoded, frames.Heartbeat | frames.Ack | frames.Accept | frames.Decline | frames.GiveBack)


@settings(max_examples=300, deadline=None)
@given(frame_like)
def test_frame_shaped_input(value: dict[str, object]) -> None:
    _decodes_or_names_the_error(json.dumps(value))


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json(value: object) -> None:
    _decodes_or_names_the_error(json.dumps(value))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_any_bytes_or_text(raw: bytes | str) -> None:
    _decodes_or_names_the_error(raw)


nested = st.integers(min_value=1, max_value=5000).flatmap(
    lambda depth: st.sampled_from(
        ['{"a":' * depth + "1" + "}" * depth, "[" * depth + "]" * depth, '{"a":[' * depth + "]}" * depth]
    )
)


@settings(max_examples=100, deadline=None)
@given(nested)
def test_nesting_of_any_depth(raw: str) -> None:
    _decodes_or_names_the_error(raw)
    _a_body_or_a_named_error(raw.encode())


def _a_body_or_a_named_error(raw: bytes) -> None:
    try:
        decode(raw, BookingBody)
    except ProtocolError as error:
        assert error.code == "bad_message" and error.message
    except msgspec.ValidationError:
        pass  # well-formed, the wrong shape: the caller names the field (422)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_body(raw: bytes) -> None:
    _a_body_or_a_named_error(raw)
    _a_body_or_a_named_error(b'{"session_type": "vi' + raw + b'deo", "plan_code": "x"}')
