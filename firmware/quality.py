# SPDX-License-Identifier: MIT
# quality.py: the one scale of signal quality. The lamp's dips, the setup page's words, and on
# the server the dashboard, the CLI and `make provision` all read this table (the server
# imports it from firmware/), so -82 dBm is "weak" with 2 dips on every screen.
# A level comes from the signal in dBm (Wi-Fi RSSI, or LTE-M RSSI from AT+CSQ) and, where the
# server knows it, from how many of a bulb's recent reports arrived late: the worse of the two.
# It must never rate a bulb better than its worst figure, and never make up a level from no
# figure at all (0 or None dBm and too few reports: None, "unknown").
# (dBm floor, most late reports per 100, lamp dips, key, Japanese, English), best first.
# Wi-Fi needs about -67 dBm for steady traffic; below -85 connections fail often.
LEVELS = (
    (-67, 5, 4, "strong", "強い", "strong"),
    (-75, 10, 3, "good", "普通", "good"),
    (-85, 25, 2, "weak", "弱い", "weak"),
    (-150, 100, 1, "poor", "とても弱い", "very weak"),
)
MIN_REPORTS = 10  # fewer reports than this say nothing about lateness


def level(dbm, late=0, reports=0):
    """The row of LEVELS for a signal in dBm (0 or None: no figure) and, on the server, `late`
    of the last `reports` reports arriving late; None when neither gives a figure."""
    i = None
    if dbm and dbm >= LEVELS[-1][0]:
        i = 0
        while dbm < LEVELS[i][0]:
            i += 1
    if reports >= MIN_REPORTS:
        j = 0
        while late * 100 > LEVELS[j][1] * reports:
            j += 1
        i = j if i is None else max(i, j)
    return None if i is None else LEVELS[i]


def dips(dbm):
    """Signal bars the lamp shows, 1..4 (LEVELS); 0 when there is no figure."""
    row = level(dbm)
    return row[2] if row else 0
