"""Clumsy and hostile clients, played from outside: a clear JSON error every time, never a 500 or a stuck booking."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import Counter

import pytest

from api.app import RedactTokens
from api.auth import Role, mint_token
from api.contract import OPERATIONS
from tests.helpers import Harness


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"session_type": 5, "plan_code": "standard"}, "session_type"),
        ({"plan_code": "standard"}, "session_type"),
        ({"session_type": "video", "plan_code": "x" * 500}, "plan_code"),
        ({"session_type": "video", "plan_code": "standard", "preferred_mechanic_id": ["a"]}, "preferred_mechanic_id"),
    ],
)
async def test_wrong_booking_bodies_name_the_field(harness: Harness, body: dict[str, object], field: str) -> None:
    response = await harness.http.post("/api/session-requests", json=body, headers=harness.customer)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error" and field in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"session_type": "hologram", "plan_code": "standard"}, "validation_error"),
        ({"session_type": "video", "plan_code": "standard", "routing": "teleport"}, "validation_error"),
        ({"session_type": "video", "plan_code": "standard", "routing": "priority", "preferred_mechanic_id": "x"}, None),
    ],
)
async def test_unknown_values_and_non_uuid_ids_are_clear(
    harness: Harness, body: dict[str, object], code: str | None
) -> None:
    response = await harness.http.post("/api/session-requests", json=body, headers=harness.customer)
    assert 400 <= response.status_code < 500, response.text
    if code:
        assert response.json()["error"] == code


async def test_deeply_nested_json_is_a_422_and_the_connection_lives(harness: Harness) -> None:
    payload = "[" * 100_000 + "]" * 100_000
    headers = {**harness.customer, "Content-Type": "application/json"}
    # Nesting past the size limit is refused as too large; within it, as invalid.
    small = "[" * 20_000 + "]" * 20_000
    response = await harness.http.post("/api/session-requests", content=small, headers=headers)
    assert response.status_code == 422 and response.json()["error"] == "validation_error"
    response = await harness.http.post("/api/session-requests", content=payload, headers=headers)
    assert response.status_code == 413 and response.json()["error"] == "body_too_large"
    assert (await harness.http.get("/healthz")).status_code == 200


async def test_a_body_over_the_limit_is_refused_before_it_is_read(harness: Harness) -> None:
    limit = harness.settings.max_body_bytes
    body = json.dumps({"session_type": "video", "plan_code": "standard", "pad": "x" * (limit + 10)})
    headers = {**harness.customer, "Content-Type": "application/json"}
    response = await harness.http.post("/api/session-requests", content=body, headers=headers)
    assert response.status_code == 413 and response.json()["error"] == "body_too_large"

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(limit // 1000 + 10):
            yield b"x" * 1000

    response = await harness.http.post("/api/session-requests", content=chunks(), headers=headers)
    assert response.status_code == 413
    assert int((await harness.http.get("/api/admin/kpis", headers=harness.admin)).json()["requests"]) == 0


async def test_a_lone_surrogate_in_a_mechanics_name_is_a_400(harness: Harness) -> None:
    """Text that cannot be Unicode is not well-formed JSON here, as on the socket: 400 `bad_message`."""
    body = '{"name": "Sam \\ud800"}'
    headers = {**harness.admin, "Content-Type": "application/json"}
    response = await harness.http.post("/api/admin/mechanics", content=body, headers=headers)
    assert response.status_code == 400 and response.json()["error"] == "bad_message"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/admin/mechanics", {"name": "Sam\u0000"}),
        ("/api/admin/workshops", {"name": "Rivera\u001b[31m"}),
        ("/api/session-requests", {"session_type": "video", "plan_code": "quick\u0000"}),
    ],
)
async def test_control_characters_in_text_are_a_422_on_every_database(
    harness: Harness, path: str, body: dict[str, str]
) -> None:
    """PostgreSQL refuses a NUL in text: the body is refused first, naming the field, never a 500."""
    headers = harness.admin if "admin" in path else harness.customer
    response = await harness.http.post(path, json=body, headers=headers)
    assert response.status_code == 422 and response.json()["error"] == "validation_error", response.text


async def test_control_characters_in_a_tokens_name_are_dropped(harness: Harness) -> None:
    sam = await harness.create_mechanic()
    app = await harness.connect(sam)
    token = harness.token(Role.CUSTOMER, harness.customer_id, "Jor\x00dan\n")
    body = {"session_type": "video", "plan_code": "standard"}
    response = await harness.http.post("/api/session-requests", json=body, headers=harness.auth(token))
    assert response.status_code == 201, response.text
    offer = await app.expect("offer", request_id=response.json()["id"])
    assert offer["customer_name"] == "Jordan"


async def test_a_lone_surrogate_in_a_tokens_name_reaches_offers_safely(harness: Harness) -> None:
    sam = await harness.create_mechanic()
    app = await harness.connect(sam)
    token = harness.token(Role.CUSTOMER, harness.customer_id, "Jordan \ud800")
    body = {"session_type": "video", "plan_code": "standard"}
    response = await harness.http.post("/api/session-requests", json=body, headers=harness.auth(token))
    assert response.status_code == 201, response.text
    offer = await app.expect("offer", request_id=response.json()["id"])
    assert offer["customer_name"].startswith("Jordan")


async def test_a_long_customer_name_is_bounded_in_offers(harness: Harness) -> None:
    sam = await harness.create_mechanic()
    app = await harness.connect(sam)
    token = harness.token(Role.CUSTOMER, harness.customer_id, "J" * 1000)
    body = {"session_type": "video", "plan_code": "standard"}
    response = await harness.http.post("/api/session-requests", json=body, headers=harness.auth(token))
    assert response.status_code == 201, response.text
    offer = await app.expect("offer", request_id=response.json()["id"])
    assert len(offer["customer_name"]) == 200


async def test_customers_reach_only_their_own_requests(harness: Harness) -> None:
    booked = await harness.book()
    stranger = harness.auth(harness.token(Role.CUSTOMER, str(uuid.uuid4())))
    request_id = booked["id"]
    assert (await harness.http.get(f"/api/session-requests/{request_id}", headers=stranger)).status_code == 404
    cancel = await harness.http.post(f"/api/session-requests/{request_id}/cancel", headers=stranger)
    assert cancel.status_code == 404
    dismiss = await harness.http.post(f"/api/session-requests/{request_id}/favorite-prompt/dismiss", headers=stranger)
    assert dismiss.status_code == 404
    assert (await harness.request(request_id))["status"] == "pending"


async def test_mechanics_complete_only_their_own_sessions(harness: Harness) -> None:
    sam, alex = await harness.create_mechanic("Sam"), await harness.create_mechanic("Alex")
    sam_app = await harness.connect(sam)
    booked = await harness.book()
    await sam_app.expect("offer", request_id=booked["id"])
    await sam_app.send({"type": "accept", "request_id": booked["id"]})
    await sam_app.expect("accepted")
    alex_token = harness.auth(harness.token(Role.MECHANIC, alex))
    response = await harness.http.post(f"/api/session-requests/{booked['id']}/complete", headers=alex_token)
    assert response.status_code == 403 and response.json()["error"] == "not_your_request"
    assert (await harness.request(booked["id"]))["status"] == "accepted"


@pytest.mark.parametrize("role", [None, Role.CUSTOMER, Role.MECHANIC])
async def test_admin_routes_and_metrics_refuse_other_roles(harness: Harness, role: Role | None) -> None:
    headers = harness.auth(harness.token(role)) if role else {}
    for path in ("/api/admin/kpis", "/api/admin/mechanics/online", "/api/admin/session-requests", "/metrics"):
        response = await harness.http.get(path, headers=headers)
        assert response.status_code == (401 if role is None else 403), path
        assert response.json()["error"] in ("unauthorized", "forbidden")


SOME_ID = "00000000-0000-0000-0000-000000000001"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (json.dumps({"type": "accept", "request_id": SOME_ID, "attempt": 2**70}), "invalid_field"),
        (json.dumps({"type": "ack", "offer_id": f"{SOME_ID}.{'1' * 40}.priority"}), "offer_unavailable"),
        (json.dumps({"type": "ack", "offer_id": f"{SOME_ID}.\u00b2.priority"}), "offer_unavailable"),
        (json.dumps({"type": "accept", "request_id": "not-a-uuid"}), "invalid_field"),
        (json.dumps({"type": "cancel", "request_id": SOME_ID, "reason": "\ud800"}), "bad_message"),
        (json.dumps({"type": "cancel", "request_id": SOME_ID, "reason": "r" * 300}), "invalid_field"),
        (json.dumps({"type": "cancel", "request_id": SOME_ID, "reason": "flat\u0000tyre"}), "invalid_field"),
        ("[" * 30_000 + "]" * 30_000, "bad_message"),
    ],
)
async def test_hostile_frames_get_a_named_error(harness: Harness, frame: str, code: str) -> None:
    mechanic_id = await harness.create_mechanic()
    app = await harness.connect(mechanic_id)
    await app.send(frame)
    assert (await app.expect("error"))["code"] == code
    await app.send({"type": "heartbeat"})
    await app.expect("heartbeat_ack")
    await app.close()


async def test_binary_frames_get_an_error(harness: Harness) -> None:
    mechanic_id = await harness.create_mechanic()
    app = await harness.connect(mechanic_id)
    await app.ws.send(b'{"type": "heartbeat"}')
    assert (await app.expect("error"))["code"] == "bad_message"
    await app.close()


async def test_a_flooding_socket_is_closed_and_others_are_served(harness: Harness) -> None:
    flooder_id, calm_id = await harness.create_mechanic("Flood"), await harness.create_mechanic("Calm")
    flooder = await harness.connect(flooder_id, auto_ack=False)
    calm = await harness.connect(calm_id)
    frame = json.dumps({"type": "accept", "request_id": str(uuid.uuid4()), "attempt": 1})
    try:
        for _ in range(harness.settings.socket_frame_burst * 3):
            await flooder.ws.send(frame)
    except Exception:
        pass  # closed mid-flood
    await asyncio.wait_for(flooder.ws.wait_closed(), 5)
    assert flooder.ws.close_code == 4429
    await calm.send({"type": "heartbeat"})
    await calm.expect("heartbeat_ack")
    await calm.close()


async def test_a_burst_of_connections_leaves_the_gauge_where_it_started(harness: Harness) -> None:
    """500 sockets opened and closed at once: every one is accounted for and released."""

    async def connected() -> float:
        body = (await harness.http.get("/metrics", headers=harness.admin)).text
        line = next(x for x in body.splitlines() if x.startswith("favdispatch_connected_sockets "))
        return float(line.split(" ")[1])

    mechanic_id = await harness.create_mechanic()
    before = await connected()
    # Heartbeating, as apps do: a burst slower than the presence TTL must not see its first sockets swept.
    apps = await asyncio.gather(*(harness.connect(mechanic_id) for _ in range(500)))
    assert await connected() == before + 500, Counter(app.ws.close_code for app in apps)  # no silence close
    await asyncio.gather(*(app.close() for app in apps))
    for _ in range(50):
        if await connected() == before:
            break
        await asyncio.sleep(0.1)
    assert await connected() == before
    for _ in range(50):  # each close releases its presence right after leaving the hub
        if not (await harness.status(mechanic_id))["is_online"]:
            break
        await asyncio.sleep(0.1)
    assert (await harness.status(mechanic_id))["is_online"] is False


async def test_a_huge_header_is_refused_without_being_buffered(harness: Harness) -> None:
    """A 20 MB header is answered 431 once the head passes 64 KiB; the server stays responsive."""
    host, port = harness.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
    answer = b""
    try:
        for _ in range(20 * 16):  # up to 20 MB in 64 KiB pieces, stopping when the server answers
            writer.write(b"x" * 65536)
            await writer.drain()
            try:
                answer = await asyncio.wait_for(reader.read(200), 0.01)
            except TimeoutError:
                continue
            if answer:
                break
    except ConnectionError:
        pass  # closed while we were still sending: the answer was already read or is in the buffer
    if not answer:
        answer = await asyncio.wait_for(reader.read(200), 2)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 431")
    assert (await harness.http.get("/healthz")).status_code == 200


DEEP = ('{"a":' * 1000 + "1" + "}" * 1000).encode()  # 6 KB, 1,000 nested objects
BAD_UTF8 = b'{"session_type": "vi\xffdeo", "plan_code": "standard", "name": "S\xffam"}'


def _json_routes() -> list[tuple[str, str, tuple[str, ...]]]:
    return [(op.method, op.path, op.roles) for op in OPERATIONS if op.body is not None]


@pytest.mark.parametrize("body", [DEEP, BAD_UTF8], ids=["nested-1000-deep", "invalid-utf8"])
async def test_every_json_route_refuses_malformed_json_with_a_400(harness: Harness, body: bytes) -> None:
    """Every route that reads JSON, as each role it serves: 400 `bad_message`, the connection kept, no 500."""
    routes = _json_routes()
    assert len(routes) >= 6
    for method, path, roles in routes:
        role = Role(roles[0]) if roles else Role.CUSTOMER
        headers = {**harness.auth(harness.token(role)), "content-type": "application/json"}
        url = path.replace("{workshop_id}", str(uuid.uuid4())).replace("{mechanic_id}", str(uuid.uuid4()))
        response = await harness.http.request(method.upper(), url, content=body, headers=headers)
        if path == "/api/checkout":  # payments are off here: refused before the body is read
            assert response.status_code == 409, response.text
            continue
        assert response.status_code == 400, (method, path, response.text)
        assert response.json()["error"] == "bad_message"
    assert (await harness.http.get("/healthz")).status_code == 200


async def test_a_deeply_nested_frame_is_a_named_error_without_a_traceback(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    mechanic_id = await harness.create_mechanic()
    app = await harness.connect(mechanic_id)
    await app.send(DEEP.decode())
    error = await app.expect("error")
    assert error["code"] == "bad_message" and "nested" in error["message"]
    await app.send({"type": "heartbeat"})
    await app.expect("heartbeat_ack")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "path",
    [
        "/ws/mechanic?token={jwt}",
        "/ws/mechanic?%74oken={jwt}",
        "/ws/mechanic?TOK%45N={jwt}",
        "/ws/mechanic?a=1&to%6Ben={jwt}&b=2",
        "/ws/mechanic?t={jwt}",
    ],
)
def test_access_lines_never_print_a_token(path: str) -> None:
    """Redacted the way uvicorn's access log formats its line, whatever the query key's encoding."""
    jwt = mint_token("s" * 32, sub=str(uuid.uuid4()), role=Role.MECHANIC)
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", path.format(jwt=jwt), "1.1", 101),
        None,
    )
    RedactTokens().filter(record)
    line = record.getMessage()
    assert jwt not in line and jwt.split(".")[1] not in line and "[redacted]" in line


async def test_a_wrong_method_is_405_naming_the_allowed_ones(harness: Harness) -> None:
    response = await harness.http.put("/api/customer/favorites", headers=harness.customer)
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"
    assert response.headers["allow"] == "GET, HEAD, POST"
    single = await harness.http.delete("/api/session-requests", headers=harness.customer)
    assert single.status_code == 405 and single.headers["allow"] == "POST"
