# SPDX-License-Identifier: MIT
"""Ingest rules, in-process (FastAPI TestClient over the real app), on a real SQLite file and on a
real PostgreSQL database (the db_url fixture).

The same rules over real HTTP against a real server process are in test_server_live.py; the
property-based flood is in test_server_flood.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from mimamori.app import create_app
from mimamori.ingest import MAX_BODY, build_batch, signed_headers
from mimamori.storage import Store
from mimamori_firmware import protocol, record
from sim.batch_client import BatchSender, Request

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(db_url, clock):
    return create_app(db_url, clock=clock)


@pytest.fixture
def store(app) -> Store:
    return app.state.store


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def bulb(store) -> BatchSender:
    dev = store.register_device(0, "bulb-1", "home-1")
    return BatchSender("bulb-1", dev.key_bytes)


def post(client: TestClient, req: Request):
    return client.post(req.path, content=req.body, headers=req.headers)


def some(bulb: BatchSender, n: int) -> list[bytearray]:
    return [bulb.record(record.K_ALIVE) for _ in range(n)]


def test_valid_batch_is_stored_and_acknowledged_with_server_time(client, store, bulb, clock):
    recs = [bulb.record(record.K_POWER_ON, sub=1, arg=7, up_ms=40)]
    recs.append(bulb.record(record.K_LINK, sub=record.T_WIFI, aux=-67, arg=1200))
    r = post(client, bulb.request(recs))
    assert r.status_code == 200
    assert r.json() == {"ack": 1, "time_ms": int(T0 * 1000)}
    got = store.records_for_device("bulb-1")
    assert [(x.seq, x.boot, x.up_ms, x.kind, x.sub, x.aux, x.arg) for x in got] == [
        (0, 1, 40, record.K_POWER_ON, 1, 0, 7),
        (1, 1, 1040, record.K_LINK, record.T_WIFI, -67, 1200),
    ]
    assert all(x.received_at == int(T0 * 1000) and x.epoch == bulb.epoch for x in got)
    dev = store.device("bulb-1")
    assert (dev.ack, dev.epoch, dev.last_boot, dev.last_req) == (1, bulb.epoch, 1, 1)
    assert dev.first_heard_at == dev.last_heard_at == int(T0 * 1000)
    assert store.records_for_household("home-1") == {"bulb-1": got}


def test_resent_records_are_stored_once_and_the_ack_stays_right(client, store, bulb):
    recs = some(bulb, 5)
    assert post(client, bulb.request(recs)).json()["ack"] == 4
    # the response was lost: the bulb sends the same records again, plus two new ones
    more = some(bulb, 2)
    r = post(client, bulb.request(recs + more))
    assert r.json()["ack"] == 6
    assert [x.seq for x in store.records_for_device("bulb-1")] == list(range(7))
    assert [d.stored for d in store.deliveries("bulb-1")] == [5, 2]


def test_captured_request_replayed_is_refused_and_changes_nothing(client, store, bulb):
    captured = bulb.request(some(bulb, 3))
    assert post(client, captured).status_code == 200
    before = store.dump()
    r = post(client, captured)
    assert r.status_code == 409
    assert r.json()["error"] == "replayed"
    assert store.dump() == before


def test_older_request_arriving_after_a_newer_one_is_refused(client, store, bulb):
    first = bulb.request(some(bulb, 1))
    second = bulb.request(some(bulb, 1))
    assert post(client, second).status_code == 200
    before = store.dump()
    assert post(client, first).status_code == 409
    assert store.dump() == before


def test_a_new_boot_starts_its_request_counter_again(client, bulb):
    for _ in range(3):
        assert post(client, bulb.request(some(bulb, 1))).status_code == 200
    on = bulb.new_boot()
    r = post(client, bulb.request([on]))
    assert r.status_code == 200 and r.json()["ack"] == 3
    assert bulb.req == 1


def test_unknown_device_and_bad_signature_are_refused_and_change_nothing(client, store, bulb):
    good = bulb.request(some(bulb, 2))
    before = store.dump()
    stranger = BatchSender("bulb-x", b"k" * 32)
    r = post(client, stranger.request(stranger_recs := some(stranger, 1)))
    assert r.status_code == 401 and r.json()["error"] == "bad_signature"
    assert stranger_recs
    wrong_key = BatchSender("bulb-1", b"\x00" * 32)
    r = post(client, wrong_key.request(some(wrong_key, 1)))
    assert r.status_code == 401 and r.json()["error"] == "bad_signature"
    assert r.headers["www-authenticate"] == "Mimamori"
    # the query string is signed: asking for other settings versions breaks the signature
    r = client.post(protocol.PATH + "?sv=9", content=good.body, headers=good.headers)
    assert r.status_code == 401
    r = client.post(good.path, content=good.body, headers={"Content-Type": good.headers[
        "Content-Type"]})
    assert r.status_code == 401 and r.json()["error"] == "unauthenticated"
    assert store.dump() == before
    assert post(client, good).status_code == 200


def test_records_the_bulb_overwrote_are_stepped_over_and_counted_as_lost(client, store, bulb):
    assert post(client, bulb.request(some(bulb, 3))).json()["ack"] == 2
    lost = some(bulb, 10)  # seqs 3..12 are overwritten before they could be sent
    assert lost
    loss = bulb.record(record.K_LOSS, arg=10)
    r = post(client, bulb.request([loss] + some(bulb, 2)))
    assert r.json()["ack"] == 15
    (gap,) = store.losses("bulb-1")
    assert (gap.first_seq, gap.last_seq, gap.missing) == (3, 12, 10)
    assert store.journals("bulb-1")[0].lost == 10
    j = store.device("bulb-1")
    assert j.ack == 15


def test_seqs_missing_inside_a_batch_do_not_hold_the_ack(client, store, bulb):
    # the bulb's own K_ACK entries take no seq and never travel; seqs missing inside a batch
    # are alive marks the uplink left out (a later record supersedes them) or records the bulb
    # could not read, which it reports itself (K_LOSS L_UNREADABLE)
    recs = some(bulb, 3)
    bulb.record(record.K_ACK, arg=2)  # shares seq 2: no hole
    recs += some(bulb, 2)
    bulb.record(record.K_ALIVE)  # seq 5: superseded by seq 6, left out of the batch
    recs += some(bulb, 1)
    r = post(client, bulb.request(recs))
    assert r.json()["ack"] == 6
    assert [x.seq for x in store.records_for_device("bulb-1")] == [0, 1, 2, 3, 4, 6]
    assert store.losses("bulb-1") == [] and store.journals("bulb-1")[0].lost == 0
    assert post(client, bulb.request(some(bulb, 1))).json()["ack"] == 7


def test_losses_are_counted_exactly_and_the_bulbs_own_count_is_kept_beside(client, store, bulb):
    post(client, bulb.request(some(bulb, 5)))  # seqs 0..4, ack 4
    some(bulb, 7)  # 5..11 overwritten on the bulb before it could send them
    loss = bulb.record(record.K_LOSS, record.L_OVERWRITTEN, 3, arg=7)  # running total 7
    later = some(bulb, 2)
    bulb.record(record.K_ALIVE)  # 15: unreadable on the bulb, which says so
    loss2 = bulb.record(record.K_LOSS, record.L_UNREADABLE, 0x0105, arg=8)
    r = post(client, bulb.request([loss, *later, loss2], from_seq=12))
    assert r.status_code == 200 and r.json()["ack"] == 16
    j = store.journals("bulb-1")[0]
    assert (j.lost, j.reported_lost) == (8, 8)  # the server's count agrees with the bulb's
    assert sorted((x.cause, x.first_seq, x.last_seq, x.missing)
                  for x in store.losses("bulb-1")) == [
        ("overwritten", 5, 11, 7), ("unreadable", 16, 16, 1)]
    # resends (the bulb lost the answer) count nothing again
    post(client, bulb.request([loss, *later, loss2], from_seq=12))
    j = store.journals("bulb-1")[0]
    assert (j.lost, j.reported_lost) == (8, 8)


def test_a_seq_arriving_with_other_content_is_kept_apart_and_counted_never_dropped(
        client, store, bulb, caplog):
    first = some(bulb, 3)
    assert post(client, bulb.request(first)).status_code == 200
    # a bulb that rolled back reuses seq 2 for a new switch-on, with other content
    bulb.next_seq = 2
    bulb.boot += 1
    reused = bulb.record(record.K_POWER_ON, arg=1, up_ms=5)
    fresh = some(bulb, 1)
    r = post(client, bulb.request([reused, *fresh]))
    assert r.status_code == 200 and r.json()["ack"] == 3  # not a client error, never a 500
    assert [x.seq for x in store.records_for_device("bulb-1")] == [0, 1, 2, 3]
    (k,) = store.conflicts("bulb-1")
    assert (k.seq, k.kind, k.boot) == (2, record.K_POWER_ON, bulb.boot)
    assert store.journals("bulb-1")[0].conflicts == 1
    assert "other content" in caplog.text
    # the same conflicting record again is the same conflict; the stored resend no conflict
    post(client, bulb.request([reused, first[1]]))
    assert store.journals("bulb-1")[0].conflicts == 1


def test_first_contact_acknowledges_up_to_just_below_from_seq(client, store, bulb):
    bulb.next_seq = 500  # a bulb that ran offline for a long time and overwrote seqs 0..499
    r = post(client, bulb.request([], from_seq=500))
    assert r.status_code == 200 and r.json()["ack"] == 499
    assert store.losses("bulb-1") == []
    assert post(client, bulb.request(some(bulb, 2))).json()["ack"] == 501


def test_a_reformatted_journal_starts_over_and_old_requests_still_cannot_replay(
    client, store, bulb
):
    old = bulb.request(some(bulb, 4))
    assert post(client, old).json()["ack"] == 3
    reflashed = BatchSender("bulb-1", bulb.key, epoch=0x0BADCAFE)  # seq and boot start over
    r = post(client, reflashed.request([reflashed.record(record.K_POWER_ON)]))
    assert r.json()["ack"] == 0
    assert store.device("bulb-1").epoch == 0x0BADCAFE
    before = store.dump()
    assert post(client, old).status_code == 409
    assert store.dump() == before
    recs = store.records_for_device("bulb-1")
    assert [(x.epoch, x.seq) for x in recs] == [(bulb.epoch, s) for s in range(4)] + [
        (0x0BADCAFE, 0)
    ]
    assert [(j.epoch, j.ordinal, j.ack) for j in store.journals("bulb-1")] == [
        (bulb.epoch, 1, 3), (0x0BADCAFE, 2, 0)]


def _resigned(bulb: BatchSender, body: bytes) -> Request:
    path = protocol.PATH + "?sv=0"
    return Request(path, signed_headers(bulb.device, bulb.key, path, body), body)


@pytest.mark.parametrize(
    "case, status, error",
    [
        ("corrupt_crc", 400, "bad_record"),
        ("count_too_high", 400, "malformed"),
        ("truncated", 400, "malformed"),
        ("short_header", 400, "malformed"),
        ("version_2", 400, "unsupported_version"),
        ("flags", 400, "malformed"),
        ("ack_record", 400, "bad_record"),
        ("erased_slot", 400, "bad_record"),
        ("seq_below_from_seq", 400, "bad_record"),
        ("seqs_out_of_order", 400, "bad_record"),
        ("too_many_records", 413, "too_many_records"),
        ("oversized", 413, "too_large"),
    ],
)
def test_malformed_signed_batches_are_refused_whole_with_a_reason(
    client, store, bulb, case, status, error
):
    recs = some(bulb, 3)
    body = bytearray(build_batch(recs, bulb.epoch, 0, bulb.boot, 1))
    h = protocol.HEADER_SIZE
    if case == "corrupt_crc":
        body[h + record.SIZE + 9] ^= 0x01
    elif case == "count_too_high":
        body[2] = 4
    elif case == "truncated":
        body = body[:-5]
    elif case == "short_header":
        body = body[:12]
    elif case == "version_2":
        body[0] = 2
    elif case == "flags":
        body[1] = 0x80
    elif case == "ack_record":
        body[h : h + record.SIZE] = record.pack(0, 1, 5, record.K_ACK, arg=0)
    elif case == "erased_slot":
        body[h + record.SIZE : h + 2 * record.SIZE] = b"\xff" * record.SIZE
    elif case == "seq_below_from_seq":
        body[8] = 1  # from_seq 1, first record seq 0
    elif case == "seqs_out_of_order":
        body[h : h + record.SIZE] = record.pack(2, 1, 5, record.K_ALIVE)
    elif case == "too_many_records":
        body[2:4] = (protocol.MAX_RECORDS + 1).to_bytes(2, "little")
    elif case == "oversized":
        many = [record.pack(s, 1, s, record.K_ALIVE) for s in range(protocol.MAX_RECORDS + 1)]
        body = bytearray(build_batch(many, bulb.epoch, 0, 1, 1))
    before = store.dump()
    r = post(client, _resigned(bulb, bytes(body)))
    assert (r.status_code, r.json()["error"]) == (status, error)
    assert r.json()["detail"]
    assert store.dump() == before


def test_transport_level_faults_get_411_413_415(client, store, bulb):
    req = bulb.request(some(bulb, 1))
    before = store.dump()
    r = client.post(req.path, content=req.body, headers={**req.headers, "Content-Type":
                                                             "application/json"})
    assert (r.status_code, r.json()["error"]) == (415, "unsupported_media_type")
    r = client.post(req.path, content=iter([req.body]), headers=req.headers)  # chunked
    assert (r.status_code, r.json()["error"]) == (411, "length_required")
    big = b"\0" * (MAX_BODY + 1)
    r = client.post(req.path, content=big, headers=signed_headers("bulb-1", bulb.key, req.path,
                                                                   big))
    assert (r.status_code, r.json()["error"]) == (413, "too_large")
    for sv in ("x", "-1", "1&sv=2", "99999999999"):
        path = protocol.PATH + "?sv=" + sv
        r = client.post(path, content=req.body,
                        headers=signed_headers("bulb-1", bulb.key, path, req.body))
        assert (r.status_code, r.json()["error"]) == (400, "bad_query")
    assert client.get(protocol.PATH).status_code == 405
    assert client.put(protocol.PATH, content=req.body).status_code == 405
    assert client.get("/v2/batches").json()["error"] == "not_found"
    assert store.dump() == before


def test_settings_reach_the_bulb_only_when_newer_than_what_it_applied(client, store, bulb):
    assert "settings" not in post(client, bulb.request(some(bulb, 1))).json()
    store.set_settings("bulb-1", {"brightness": 0.6, "heartbeat_s": 600})
    r = post(client, bulb.request(some(bulb, 1), sv=0))
    assert r.json()["sv"] == 1
    assert r.json()["settings"] == {"brightness": 0.6, "heartbeat_s": 600}
    r = post(client, bulb.request(some(bulb, 1), sv=1))
    assert set(r.json()) == {"ack", "time_ms"}
    assert r.content.startswith(b'{"ack":')  # compact JSON: no spaces on a metered link


def test_a_server_fault_is_a_503_that_changes_nothing_not_a_500(client, store, bulb,
                                                                 monkeypatch):
    before = store.dump()

    def broken(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "ingest", broken)
    r = post(client, bulb.request(some(bulb, 1)))
    assert r.status_code == 503 and r.json()["error"] == "server_error"
    assert store.dump() == before


def test_openapi_documents_the_binary_batch_body(client):
    doc = client.get("/openapi.json").json()
    op = doc["paths"][protocol.PATH]["post"]
    assert op["requestBody"]["content"]["application/octet-stream"]["schema"]["format"] == \
        "binary"
    assert {"400", "401", "409", "413"} <= set(op["responses"])
    assert {p["name"] for p in op["parameters"]} >= {"sv", "Authorization"}


def test_routes_added_by_other_parts_keep_their_own_errors(tmp_path):
    from fastapi import APIRouter, HTTPException

    router = APIRouter()

    @router.get("/v1/households/{hid}")
    def household(hid: str, days: int = 7) -> dict:
        raise HTTPException(404, f"no household {hid!r}")

    app = create_app(tmp_path / "r.db", routers=[router])
    with TestClient(app) as c:
        assert c.get("/v1/households/x").json() == {"error": "not_found",
                                                    "detail": "no household 'x'"}
        r = c.get("/v1/households/x?days=many")
        assert r.status_code == 400 and "query.days" in r.json()["detail"]
