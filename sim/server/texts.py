# SPDX-License-Identifier: MIT
"""Rules for the names and texts people type: what the API, the CLI and the dashboard accept.

A name (a household's, a watcher's) goes into e-mail headers and page titles, so it is one line
of printable text; a note may have line breaks. Both have a length limit. `check` returns the
text as it is kept, or raises ValueError saying what to write instead (a 400 at the API, an
error line from the CLI, a message on the page).

`header` makes a text safe for one header line when it is sent (names kept before these rules
existed): a line break in a household's name must never stop its e-mails.

It must never let a control character into a name, nor change a text it accepts.
"""

from __future__ import annotations

import re

NAME_MAX = 80  # a household's or a watcher's name
REASON_MAX = 200  # a pause's or an absence's reason
NOTE_MAX = 1000  # a note on an alert's outcome

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def check(field: str, value: object, max_len: int, lines: bool = False) -> str:
    """The text, stripped of surrounding spaces; ValueError when it is not text, holds a
    control character (line breaks and tabs allowed when lines=True) or is too long."""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be text (got {value!r})")  # noqa: TRY004
    text = value.strip()
    bad = (_CONTROL_BUT_LINES if lines else _CONTROL).search(text)
    if bad:
        raise ValueError(f"{field} contains the control character U+{ord(bad.group()):04X}"
                         + (": write plain text" if lines
                            else " (a line break or tab?): write it as one line of plain text"))
    if len(text) > max_len:
        raise ValueError(f"{field} is {len(text)} characters long; write at most {max_len}")
    return text


def name(field: str, value: object) -> str:
    return check(field, value, NAME_MAX)


def header(text: str) -> str:
    """One header line: every control character becomes a space."""
    return " ".join(_CONTROL.sub(" ", text).split())
