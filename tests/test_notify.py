# SPDX-License-Identifier: MIT
"""Delivery: e-mail to a real SMTP server, webhooks to a real HTTP receiver that fails, the
console; retries with backoff; a crash between deciding and sending, and between sending and
marking sent."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from mimamori import households as hh
from mimamori import notify
from mimamori.storage import Database, Store
from sim.batch_client import BatchSender
from sim.server_process import REPO, ServerProcess
from tests.alerts_rig import Inboxes, Receiver, signature_ok, visit

JST = timezone(timedelta(hours=9))
H = 3600.0
T0 = datetime(2026, 3, 2, 10, 42, tzinfo=JST).timestamp()
NOW = int(T0 * 1000)


@pytest.fixture
def inboxes():
    ib = Inboxes().start()
    yield ib
    ib.stop()


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def setup_db(path, watchers, rule="fixed"):
    db = Database(path)
    store = Store(db)
    hh.open_people(db)
    with db.tx() as c:
        home = hh.add_household(c, NOW - int(H * 1000), "home-1", "Sato",
                                settings={"activity_rule": rule})
        ws = [hh.add_watcher(c, NOW, "home-1", **w) for w in watchers]
    dev = store.register_device(NOW, "toilet", "home-1")
    return db, store, home, ws, BatchSender(dev.id, dev.key_bytes)


def test_invitation_e_mail_reaches_the_inbox_in_japanese_with_a_message_id(db_url, inboxes):
    db, _, home, (w,), _ = setup_db(db_url,
                                    [{"name": "Aiko", "email": "aiko@example.org"}])
    cfg = notify.NotifierSettings(smtp_host="127.0.0.1", smtp_port=inboxes.port)
    with db.tx() as c:
        (oid,) = notify.enqueue(c, NOW, "invite", home, w, {})
    assert notify.deliver_due(db, NOW, cfg) == {"sent": 1, "failed": 0, "dead": 0,
                                                "waiting": 0}
    (m,) = inboxes.of("aiko@example.org")
    assert m.subject == "【みまもり電球】Sato の見守りに登録されました（テスト送信）"
    assert "テストメッセージ" in m.body and m.message_id == f"<{oid}@{notify.mail_domain(cfg)}>"
    assert notify.deliver_due(db, NOW + 60_000, cfg)["sent"] == 0  # sent once only
    (row,) = notify.outbox(db)
    assert row.state == "sent" and row.attempts == 1


def test_smtp_server_down_is_retried_with_backoff_and_delivers_once_when_it_is_back(db_url):
    db, _, home, (w,), _ = setup_db(db_url,
                                    [{"name": "Aiko", "email": "aiko@example.org", "lang": "en"}])
    ib = Inboxes()  # its port is chosen but nothing listens yet
    cfg = notify.NotifierSettings(smtp_host="127.0.0.1", smtp_port=ib.port, timeout_s=2)
    with db.tx() as c:
        notify.enqueue(c, NOW, "invite", home, w, {})
    assert notify.deliver_due(db, NOW, cfg)["failed"] == 1
    (row,) = notify.outbox(db)
    assert row.state == "pending" and "Connection" in (row.last_error or "")
    ib.start()
    try:
        assert notify.deliver_due(db, NOW + 29_000, cfg)["sent"] == 0  # backoff: 30 s
        assert notify.deliver_due(db, NOW + 30_000, cfg)["sent"] == 1
        assert notify.deliver_due(db, NOW + 999_000, cfg)["sent"] == 0
        (m,) = ib.of("aiko@example.org")
        assert "test message" in m.subject
    finally:
        ib.stop()


def test_webhook_is_signed_retried_with_backoff_and_keeps_its_idempotency_key(db_url, receiver):
    db, _, home, (w,), _ = setup_db(db_url,
                                    [{"name": "Aiko", "webhook_url": receiver.url, "lang": "en"}])
    cfg = notify.NotifierSettings()
    receiver.fail = [500, 503]
    with db.tx() as c:
        (oid,) = notify.enqueue(c, NOW, "invite", home, w, {})
    t = NOW
    assert notify.deliver_due(db, t, cfg)["failed"] == 1
    assert notify.deliver_due(db, t + 29_000, cfg) == {"sent": 0, "failed": 0, "dead": 0,
                                                       "waiting": 0}
    assert notify.deliver_due(db, t + 30_000, cfg)["failed"] == 1
    assert notify.deliver_due(db, t + 30_000 + 59_000, cfg)["sent"] == 0  # then 60 s
    assert notify.deliver_due(db, t + 30_000 + 60_000, cfg)["sent"] == 1
    assert [h.status for h in receiver.hits] == [500, 503, 200]
    assert {h.headers["Idempotency-Key"] for h in receiver.hits} == {oid}
    assert all(signature_ok(w.webhook_secret or "", h) for h in receiver.hits)
    body = receiver.hits[-1].json
    assert body["kind"] == "invite" and body["household"] == "home-1" and body["id"] == oid
    forged = receiver.hits[-1]
    forged.body = forged.body.replace(b"invite", b"alert!")
    assert not signature_ok(w.webhook_secret or "", forged)
    (row,) = notify.outbox(db)
    assert row.state == "sent" and row.attempts == 3


def test_unreachable_webhook_gives_up_after_the_last_attempt_and_keeps_the_error(db_url):
    dead_url = f"http://127.0.0.1:{Inboxes().port}/hook"
    db, _, home, (w,), _ = setup_db(db_url, [{"name": "Aiko", "webhook_url": dead_url}])
    cfg = notify.NotifierSettings(max_attempts=3, timeout_s=2)
    with db.tx() as c:
        notify.enqueue(c, NOW, "invite", home, w, {})
    got = [notify.deliver_due(db, NOW + i * 3_600_000, cfg) for i in range(5)]
    assert [g["failed"] for g in got] == [1, 1, 0, 0, 0] and got[2]["dead"] == 1
    (row,) = notify.outbox(db)
    assert row.state == "dead" and row.attempts == 3 and "Connection refused" in (row.last_error or "")


def test_console_channel_prints_one_line_per_message(db_url):
    db, _, home, (w,), _ = setup_db(db_url,
                                    [{"name": "Aiko", "console": True, "lang": "en"}])
    out = io.StringIO()
    cfg = notify.NotifierSettings(console=out)
    with db.tx() as c:
        notify.enqueue(c, NOW, "invite", home, w, {})
    notify.deliver_due(db, NOW, cfg)
    assert out.getvalue() == ("[mimamori] to Aiko (invite): [Mimamori] You now watch over Sato "
                              "(test message)\n")


CRASH = """
import os, signal, sys
from mimamori import notify, sweeper
from mimamori.storage import Database
r = sweeper.sweep(Database(sys.argv[1]), int(sys.argv[2]), notify.NotifierSettings())
assert r.evaluated == ["home-1"], r
os.kill(os.getpid(), signal.SIGKILL)  # the decision is committed; nothing was sent
"""


def test_crash_between_deciding_and_sending_sends_each_alert_once_after_restart(db_url,
                                                                                 inboxes):
    path = db_url
    db, store, home, (aiko, _), bulb = setup_db(path,
                                                [{"name": "Aiko", "email": "aiko@example.org"},
                                                 {"name": "Ken", "email": "ken@example.org"}])
    visit(store, bulb, T0)
    with db.tx() as c:  # the invitations went out long ago
        c.execute("UPDATE outbox SET state = 'sent', sent_at = ?", (NOW,))
    db.close()
    later = NOW + int(25 * H * 1000)
    p = subprocess.run([sys.executable, "-c", CRASH, str(path), str(later)], cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, check=False)
    assert p.returncode == -9, p.stderr.decode()
    db = Database(path)
    pending = notify.outbox(db, state="pending")
    assert sorted(o.payload["to"] for o in pending) == ["aiko@example.org", "ken@example.org"]
    assert not inboxes.mails
    env = {"MIMAMORI_SMTP": inboxes.address, "MIMAMORI_SWEEP_S": "0.1"}
    with ServerProcess(path, clock=f"fixed:{later / 1000 + 60}", env=env):
        inboxes.wait(lambda: len(inboxes.mails) >= 2)
        inboxes.wait(lambda: not notify.outbox(db, state="pending") and
                     all(o.state == "sent" for o in notify.outbox(db)))
        # the worker runs more rounds: each round that delivers a test message also swept and
        # delivered everything else that was due, and sent nothing twice
        for n in range(1, 4):
            with db.tx() as c:
                notify.enqueue(c, later, "invite", home, aiko, {})
            inboxes.wait(lambda n=n: len(inboxes.of("aiko@example.org", "invite")) == n)
    assert [m.kind for m in inboxes.of("aiko@example.org")] == ["alert"] + ["invite"] * 3
    assert [m.kind for m in inboxes.of("ken@example.org")] == ["alert"]
    assert "25時間、電気がつけられていません（最後に点灯：3/2 10:42）" in inboxes.of("ken@example.org")[0].subject


def test_crash_after_sending_before_marking_resends_once_with_the_same_message_id(db_url,
                                                                                  inboxes):
    db, _, home, (w,), _ = setup_db(db_url,
                                    [{"name": "Aiko", "email": "aiko@example.org"}])
    cfg = notify.NotifierSettings(smtp_host="127.0.0.1", smtp_port=inboxes.port)
    with db.tx() as c:
        notify.enqueue(c, NOW, "invite", home, w, {})
    (row,) = notify.outbox(db)
    notify.send(row, cfg, NOW, None)  # the worker sent it and died before marking it
    with db.tx() as c:  # its lease ran out with the process
        c.execute("UPDATE outbox SET lease_until = NULL")
    assert notify.deliver_due(db, NOW + 1, cfg)["sent"] == 1
    assert notify.deliver_due(db, NOW + 10 * 3_600_000, cfg)["sent"] == 0
    got = inboxes.of("aiko@example.org")
    assert len(got) == 2 and got[0].message_id == got[1].message_id  # the receiver dedups


def test_webhook_signature_worked_example_in_the_docs():
    doc = (REPO / "docs" / "alert-lifecycle.md").read_text()
    secret = re.search(r"secret `([0-9a-f]{64})`", doc).group(1)
    ts = re.search(r"timestamp `(\d+)`", doc).group(1)
    body = re.search(r"exactly these bytes\):\n\n```\n(.*)\n```", doc).group(1).encode()
    want = re.search(r"X-Mimamori-Signature: (sha256=[0-9a-f]{64})`", doc).group(1)
    assert len(body) == int(re.search(r"body \((\d+) bytes", doc).group(1))
    assert notify.sign_webhook(secret, ts, body) == want


def test_e_mail_through_a_relay_that_wants_starttls_and_a_password(tmp_path, db_url):
    import ssl

    from aiosmtpd.smtp import AuthResult

    cert, key = tmp_path / "smtp.pem", tmp_path / "smtp.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)

    def auth(server, session, envelope, mechanism, data):
        return AuthResult(success=(data.login, data.password) == (b"mimamori", b"s3cret"),
                          handled=False)

    ib = Inboxes(tls_context=tls, require_starttls=True, authenticator=auth,
                 auth_require_tls=True).start()
    try:
        db, _, home, (w,), _ = setup_db(db_url,
                                        [{"name": "Aiko", "email": "aiko@example.org"}])
        with db.tx() as c:
            notify.enqueue(c, NOW, "invite", home, w, {})
        env = {"MIMAMORI_SMTP": ib.address, "MIMAMORI_SMTP_TLS": "starttls",
               "MIMAMORI_SMTP_USER": "mimamori", "MIMAMORI_SMTP_PASSWORD": "wrong",
               "MIMAMORI_SMTP_CA": str(cert)}
        assert notify.deliver_due(db, NOW, notify.NotifierSettings.from_env(env))["failed"] == 1
        assert "Authentication" in (notify.outbox(db)[0].last_error or "")
        plain = notify.NotifierSettings.from_env({**env, "MIMAMORI_SMTP_TLS": "none",
                                        "MIMAMORI_SMTP_PASSWORD": "s3cret"})
        assert notify.deliver_due(db, NOW + 30_000, plain)["failed"] == 1  # no TLS: refused
        good = notify.NotifierSettings.from_env({**env, "MIMAMORI_SMTP_PASSWORD": "s3cret"})
        assert notify.deliver_due(db, NOW + 90_000, good)["sent"] == 1
        (m,) = ib.of("aiko@example.org")
        assert m.kind == "invite"
    finally:
        ib.stop()


def test_e_mails_carry_date_a_message_id_in_the_public_domain_a_sender_name_and_links(
        db_url, inboxes):
    """What spam filters and mail programs look at, as the SMTP server received it: a Date, a
    Message-ID in the public URL's domain, a From with a display name in the reader's
    language; an alert mail links the dashboard; the invitation asks 'I received this'."""
    from email.utils import parseaddr, parsedate_to_datetime

    from mimamori import alerts
    from mimamori.rules import OPEN, Decision

    db, _, home, (ja, en), _ = setup_db(db_url, [
        {"name": "Ken", "email": "ken@example.org", "lang": "ja"},
        {"name": "Aiko", "email": "aiko@example.org", "lang": "en"}])
    cfg = notify.NotifierSettings(smtp_host="127.0.0.1", smtp_port=inboxes.port,
                        public_url="https://mimamori.example.city",
                        mail_from="alerts@example.city")
    with db.tx() as c:
        for w in (ja, en):
            notify.invite(c, NOW, home, w, cfg.public_url)
        alerts.apply(c, home, [Decision("no_activity", OPEN, T0 - 25 * H,
                                        "no switch-on for 25 h: last at 09:42", None,
                                        at=T0 - 25 * H, detail={"last_on": T0 - 25 * H,
                                                                "gap_h": 25.0,
                                                                "limit_h": 24.0})], NOW, cfg)
    assert notify.deliver_due(db, NOW, cfg)["sent"] == 4
    mails = inboxes.of("ken@example.org") + inboxes.of("aiko@example.org")
    for m in mails:
        assert parsedate_to_datetime(str(m.msg["Date"])).tzinfo is not None
        assert m.message_id.endswith("@mimamori.example.city>"), m.message_id
        name, addr = parseaddr(str(m.msg["From"]))
        assert addr == "alerts@example.city"
        assert name == ("みまもり電球" if "ken" in m.to[0] else "Mimamori bulb")
    (ken_alert,) = [m for m in inboxes.of("ken@example.org") if m.kind == "alert"]
    assert "https://mimamori.example.city/h/home-1" in ken_alert.body
    assert "詳細：" in ken_alert.body and "最後に点灯" in ken_alert.body
    assert "no switch-on" not in ken_alert.body  # the rules' English evidence stays out
    (aiko_alert,) = [m for m in inboxes.of("aiko@example.org") if m.kind == "alert"]
    assert "Details: no switch-on for 25 h" in aiko_alert.body
    (ken_invite,) = [m for m in inboxes.of("ken@example.org") if m.kind == "invite"]
    got = re.search(r"(https://mimamori\.example\.city/a/\S+)", ken_invite.body)
    assert got and "メールを受け取りました" in ken_invite.body
    with db.read() as c:
        action, _, wid = notify.read_token(notify.link_key(c), got.group(1).split("/a/")[1], NOW)
    assert (action, wid) == ("received", ja.id)


def test_a_sender_name_given_in_mail_from_is_kept():
    cfg = notify.NotifierSettings(mail_from="Oshu City <watch@oshu.example>")
    assert notify.sender(cfg, "ja") == "Oshu City <watch@oshu.example>"
    assert notify.mail_domain(notify.NotifierSettings(public_url="https://a.example:8443/x")) == "a.example"
