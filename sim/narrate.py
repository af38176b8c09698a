# SPDX-License-Identifier: MIT
"""The demo's voice in the terminal: one line per thing a person would care about, stamped with
the simulated date and time, a header when a new day starts, and a progress bar for the week on
the bottom line (redrawn in place on a terminal; on a pipe or in a test, a plain line per day).

It must never read the clock (times are given) and never write anything but text to `out`.
"""

from __future__ import annotations

import shutil
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

MARKS = {
    "note": "·",  # something happened at home (the script)
    "radio": "~",  # a radio change
    "alert": "!",  # an alert opened, was escalated or reminded
    "mail": "✉",  # e-mails delivered
    "act": "→",  # a watcher acted
    "ok": "✓",  # an alert ended well (cleared, resolved)
    "server": "=",  # what the server concluded
    "info": " ",
}


@dataclass
class Narrator:
    start: datetime
    end: datetime
    out: TextIO = field(default_factory=lambda: sys.stdout)
    tty: bool | None = None
    lines: list[str] = field(default_factory=list)  # everything said, for tests and the summary
    _day: int = -1
    _bar: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.tty is None:
            self.tty = bool(getattr(self.out, "isatty", lambda: False)())

    # ---- lines
    def say(self, t: datetime | None, who: str, text: str, mark: str = "note") -> None:
        """One line: '  Tue 09:00  鈴木さん   ! text'."""
        with self._lock:
            if t is not None:
                self._new_day(t)
            stamp = t.strftime("%a %H:%M") if t is not None else " " * 9
            line = f"  {stamp}  {_pad(who, 10)} {MARKS.get(mark, mark)} {text}"
            self.lines.append(line)
            self._print(line)

    def text(self, line: str = "") -> None:
        """A plain line (headings, the summary)."""
        with self._lock:
            self.lines.append(line)
            self._print(line)

    def _new_day(self, t: datetime) -> None:
        day = (t.date() - self.start.date()).days
        if day > self._day:
            self._day = day
            head = f"── {t.strftime('%a %d %b')} "
            self.lines.append(head)
            self._print(head + "─" * max(0, 60 - _width(head)))

    def _print(self, line: str) -> None:
        if self.tty:
            self.out.write("\r\033[K" + line + "\n" + self._bar)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    # ---- the progress bar
    def progress(self, t: datetime, status: str = "", settled: datetime | None = None) -> None:
        """Redraw the bar (terminal only). settled: lines up to this instant have all been said,
        so a new day's header may come (on a pipe, the headers are the sign of life)."""
        with self._lock:
            self._new_day(settled or t)
            if not self.tty:
                return
            total = (self.end - self.start).total_seconds()
            done = min(1.0, max(0.0, (t - self.start).total_seconds() / total))
            cols = shutil.get_terminal_size((100, 24)).columns
            width = max(10, min(40, cols - 45))
            full = int(done * width)
            bar = "█" * full + "░" * (width - full)
            self._bar = f"  [{bar}] {t.strftime('%a %H:%M')} {done:4.0%}  {status}"[:cols - 1]
            self.out.write("\r\033[K" + self._bar)
            self.out.flush()

    def close(self) -> None:
        with self._lock:
            if self.tty and self._bar:
                self.out.write("\r\033[K")
                self.out.flush()
            self._bar = ""


def _width(s: str) -> int:
    """Terminal columns of s (CJK characters are two wide)."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in s)


def _pad(s: str, cols: int) -> str:
    return s + " " * max(0, cols - _width(s))
