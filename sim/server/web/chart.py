# SPDX-License-Identifier: MIT
"""The activity chart: a household's on-intervals over the last days as an SVG, drawn on the server.

One row per local day (today at the top), midnight to midnight left to right. A visit whose
times are known is a solid bar; a visit whose start is only bounded (a boot that never talked,
reported late) is a thin hatched strip over the whole range in which it happened, so the
picture never shows an instant the data do not give. Paused days are shaded with a dotted pattern and
labelled, alerts are marked with a triangle, and the legend says all of it in words, so
nothing depends on telling colours apart.

Pure: (intervals, pauses, alert instants, tz, now) in, SVG text out. It must never read the
clock, and never draw a visit narrower than can be seen (a short visit is still a visit).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from zoneinfo import ZoneInfo

from mimamori.clock import HOUR_MS, MINUTE_MS, to_ms, to_s
from mimamori.timeline import Interval
from mimamori.web.i18n import day_label, t

W = 480
X0 = 88  # left of the plot (day labels before it)
PW = W - X0 - 24  # plot width: 24 h
TOP = 32
ROW = 24
GAP = 6
FONT = 18
RANGE_H = 10  # height of an uncertain range (a thinner strip than a bar)
MIN_W = 2.5  # narrowest bar drawn (about 7 minutes): every switch-on stays visible
EXACT_MS = 5 * MINUTE_MS  # a start known within this is drawn solid
UNBOUNDED_MS = HOUR_MS  # an unbounded start is drawn as uncertain over the hour before it
MAY_STILL_BE_ON_MS = 6 * HOUR_MS

SOLID = "#1d3f6e"
HATCH_BG = "#fbe7b5"
HATCH_FG = "#8a5a00"


@dataclass(frozen=True)
class Segment:
    start: int  # ms
    end: int
    certain: bool


def segments(iv: Interval, now: int) -> list[Segment]:
    """What to draw for one visit: solid where its times are known, hatched where bounded."""
    sl, se = iv.start_latest, iv.start_earliest
    known_end = iv.end_earliest if iv.end_earliest is not None else sl + iv.on_ms
    out: list[Segment] = []
    if se is not None and sl - se <= EXACT_MS:
        out.append(Segment(sl, max(sl, known_end), True))
        if iv.end_latest is not None and iv.end_latest - known_end > EXACT_MS:
            out.append(Segment(known_end, iv.end_latest, False))
    else:
        lo = se if se is not None else sl - UNBOUNDED_MS
        hi = iv.end_latest if iv.end_latest is not None else sl + iv.on_ms
        out.append(Segment(lo, max(hi, sl), False))
    if iv.end_latest is None and iv.ended_by == "open":  # the lamp may still be on
        last = max(s.end for s in out)
        if now - last < MAY_STILL_BE_ON_MS and now > last:
            out.append(Segment(last, now, False))
    return out


def _days(tz: str, now: int, days: int) -> list[datetime]:
    z = ZoneInfo(tz)
    today = datetime.fromtimestamp(to_s(now), z).date()
    return [datetime.combine(today - timedelta(days=i), datetime.min.time(), z)
            for i in range(days)]


def activity_svg(intervals: Iterable[Interval], tz: str, now: int, lang: str = "ja",
                 days: int = 14, pauses: Sequence[tuple[int, int]] = (),
                 alerts_at: Sequence[int] = ()) -> str:
    """The chart as one <svg> element (ms everywhere; pauses are [start, end))."""
    tr = t(lang)
    rows = _days(tz, now, days)
    height = TOP + days * (ROW + GAP) + 4
    hx = PW / 24.0
    out: list[str] = [
        (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" '
         f'class="chart" role="img" aria-labelledby="chart-title chart-desc" '
         f'font-family="sans-serif" font-size="{FONT}">'),
        f'<title id="chart-title">{escape(tr("activity"))}</title>',
        f'<desc id="chart-desc">{escape(tr("activity_help"))}</desc>',
        "<defs>",
        (f'<pattern id="hatch" patternUnits="userSpaceOnUse" width="6" height="6" '
         f'patternTransform="rotate(45)"><rect width="6" height="6" fill="{HATCH_BG}"/>'
         f'<rect width="2.5" height="6" fill="{HATCH_FG}"/></pattern>'),
        ('<pattern id="paused" patternUnits="userSpaceOnUse" width="8" height="8">'
         '<rect width="8" height="8" fill="#e4e4e4"/><circle cx="4" cy="4" r="1.4" '
         'fill="#666"/></pattern>'),
        "</defs>",
    ]
    for h in range(0, 25, 3):  # hour grid and labels
        x = X0 + h * hx
        major = h % 6 == 0
        out.append(f'<line x1="{x:.1f}" y1="{TOP - 4}" x2="{x:.1f}" y2="{height - 4}" '
                   f'stroke="{"#9aa0a6" if major else "#d5d8dc"}" stroke-width="1"/>')
        if major:
            out.append(f'<text x="{x:.1f}" y="{TOP - 10}" text-anchor="middle" '
                       f'fill="#333">{h}{"時" if lang == "ja" else ""}</text>')
    ivs = list(intervals)
    for i, d0 in enumerate(rows):
        a, b = to_ms(d0.timestamp()), to_ms((d0 + timedelta(days=1)).timestamp())
        y = TOP + i * (ROW + GAP)
        out.append(f'<text x="{X0 - 8}" y="{y + ROW * 0.72:.1f}" text-anchor="end" '
                   f'fill="#111">{escape(day_label(d0, lang))}</text>')
        past_w = max(0.0, min(1.0, (now - a) / (b - a))) * PW
        out.append(f'<rect x="{X0}" y="{y}" width="{past_w:.1f}" height="{ROW}" '
                   'fill="#f1f3f5"/>')
        if past_w < PW:  # the rest of today: not happened yet
            out.append(f'<rect x="{X0 + past_w:.1f}" y="{y + 0.5}" width="{PW - past_w:.1f}" '
                       f'height="{ROW - 1}" fill="#fff" stroke="#c8ccd0" '
                       'stroke-dasharray="3 3"/>')
        for ps, pe in pauses:
            s, e = max(ps, a), min(pe, b, max(now, a))
            if e > s:
                x = X0 + (s - a) / (b - a) * PW
                w = (e - s) / (b - a) * PW
                out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{ROW}" '
                           'fill="url(#paused)"/>')
                if w > 70:
                    out.append(f'<text x="{x + w / 2:.1f}" y="{y + ROW * 0.72:.1f}" '
                               f'text-anchor="middle" font-size="13" fill="#222">'
                               f'{escape(tr("lg_paused"))}</text>')
        for iv in ivs:
            for sg in segments(iv, now):
                s, e = max(sg.start, a), min(sg.end, b)
                if e <= s and not (a <= sg.start < b):
                    continue
                x = X0 + (max(s, a) - a) / (b - a) * PW
                w = max(MIN_W, (e - s) / (b - a) * PW)
                w = min(w, X0 + PW - x) if x < X0 + PW else MIN_W
                if sg.certain:
                    out.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" '
                               f'height="{ROW - 6}" fill="{SOLID}" class="on"/>')
                else:
                    ry = y + (ROW - RANGE_H) / 2
                    out.append(f'<rect x="{x:.1f}" y="{ry:.1f}" width="{w:.1f}" '
                               f'height="{RANGE_H}" fill="url(#hatch)" stroke="{HATCH_FG}" '
                               'stroke-width="1" class="uncertain"/>')
        for at in alerts_at:
            if a <= at < b:
                x = X0 + (at - a) / (b - a) * PW
                out.append(f'<path d="M{x - 7:.1f},{y + ROW} L{x + 7:.1f},{y + ROW} '
                           f'L{x:.1f},{y + 4} Z" fill="#fff" stroke="#000" stroke-width="2" '
                           'class="alert-mark"/>'
                           f'<text x="{x:.1f}" y="{y + ROW - 3}" text-anchor="middle" '
                           'font-size="12" font-weight="bold">!</text>')
        if a <= now < b:
            x = X0 + (now - a) / (b - a) * PW
            out.append(f'<line x1="{x:.1f}" y1="{y - 2}" x2="{x:.1f}" y2="{y + ROW + 2}" '
                       'stroke="#000" stroke-width="2"/>')
    out.append("</svg>")
    return "\n".join(out)


def legend_svg(kind: str) -> str:
    """A small swatch for the HTML legend: on, uncertain, paused, alert."""
    body = {
        "on": f'<rect x="1" y="4" width="30" height="14" fill="{SOLID}"/>',
        "uncertain": ('<rect x="1" y="6" width="30" height="10" fill="url(#hatch-l)" '
                      f'stroke="{HATCH_FG}"/>'),
        "paused": '<rect x="1" y="4" width="30" height="14" fill="url(#paused-l)"/>',
        "alert": ('<path d="M9,20 L23,20 L16,4 Z" fill="#fff" stroke="#000" '
                  'stroke-width="2"/>'),
    }[kind]
    defs = ('<defs><pattern id="hatch-l" patternUnits="userSpaceOnUse" width="6" height="6" '
            f'patternTransform="rotate(45)"><rect width="6" height="6" fill="{HATCH_BG}"/>'
            f'<rect width="2.5" height="6" fill="{HATCH_FG}"/></pattern>'
            '<pattern id="paused-l" patternUnits="userSpaceOnUse" width="8" height="8">'
            '<rect width="8" height="8" fill="#e4e4e4"/><circle cx="4" cy="4" r="1.4" '
            'fill="#666"/></pattern></defs>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 22" width="32" '
            f'height="22" aria-hidden="true">{defs}{body}</svg>')


def day_rows(intervals: Iterable[Interval], tz: str, now: int,
             days: int = 14) -> list[tuple[datetime, int, int | None, int | None]]:
    """(day, switch-ons, first start, last start) per day, today first: the chart in words."""
    rows = _days(tz, now, days)
    out = []
    ivs = list(intervals)
    for d0 in rows:
        a, b = to_ms(d0.timestamp()), to_ms((d0 + timedelta(days=1)).timestamp())
        starts = [iv.start_latest for iv in ivs if a <= iv.start_latest < b]
        out.append((d0, len(starts), min(starts) if starts else None,
                    max(starts) if starts else None))
    return out
