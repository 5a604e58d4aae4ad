"""`/asyncapi.json`: the socket's AsyncAPI 3 document is valid against the AsyncAPI 3.0.0 schema, names every frame
the server accepts and sends, and every documented frame (docs/protocol.md) validates against its message's
payload schema, so a client generated from it speaks what the server speaks."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any, get_args

import jsonschema
import msgspec

from api.contract import ASYNCAPI
from delivery.close_codes import CloseCode
from dispatch import frames
from tests.helpers import Harness
from tests.test_contract import _examples

ASYNCAPI_SCHEMA = json.loads(
    gzip.decompress((Path(__file__).parent / "schemas" / "asyncapi-3.0.0.json.gz").read_bytes())
)


def _tags(union: Any) -> set[str]:
    return {msgspec.inspect.type_info(frame).tag for frame in get_args(union)}  # type: ignore[attr-defined]


def test_the_document_is_valid_asyncapi_3() -> None:
    validator = jsonschema.Draft7Validator(ASYNCAPI_SCHEMA)
    assert [error.message for error in validator.iter_errors(ASYNCAPI)] == []
    broken = copy.deepcopy(ASYNCAPI)
    broken["operations"]["send_offer"]["action"] = "emit"  # the schema is strict enough to notice
    assert not validator.is_valid(broken)


def test_it_names_every_frame_the_server_accepts_and_sends_and_every_close_code() -> None:
    socket = [op for op in ASYNCAPI["operations"].values() if op["channel"]["$ref"] == "#/channels/mechanic"]
    received = {op["messages"][0]["$ref"].rsplit("/", 1)[1] for op in socket if op["action"] == "receive"}
    sent = {op["messages"][0]["$ref"].rsplit("/", 1)[1] for op in socket if op["action"] == "send"}
    assert received == _tags(frames.ClientFrame)
    assert sent == _tags(frames.ServerFrame)
    stream = [op for op in ASYNCAPI["operations"].values() if op["channel"]["$ref"] == "#/channels/favorites"]
    events = {ASYNCAPI["components"]["messages"][op["messages"][0]["$ref"].rsplit("/", 1)[1]]["name"] for op in stream}
    assert events == {"snapshot", "favorite", "removed"}
    assert {op["action"] for op in stream} == {"send"}
    assert set(ASYNCAPI["channels"]["mechanic"]["x-close-codes"]) == {str(int(code)) for code in CloseCode}


def test_every_documented_frame_validates_against_its_payload_schema() -> None:
    components = ASYNCAPI["components"]
    for example in _examples():
        frame = json.loads(example)
        payload = components["messages"][frame["type"]]["payload"]
        schema = {**payload, "components": {"schemas": components["schemas"]}}
        jsonschema.Draft202012Validator(schema).validate(frame)
    offer = {"type": "offer", "offer_id": "x"}  # fields missing: refused
    schema = {**components["messages"]["offer"]["payload"], "components": {"schemas": components["schemas"]}}
    assert not jsonschema.Draft202012Validator(schema).is_valid(offer)


async def test_the_served_document_is_the_generated_one(harness: Harness) -> None:
    response = await harness.http.get("/asyncapi.json")
    assert response.status_code == 200
    assert response.json() == msgspec.json.decode(msgspec.json.encode(ASYNCAPI))
