# SPDX-License-Identifier: MIT
"""The server keeps one time unit: integer milliseconds since the epoch, spans named once in
sim/server/clock.py (SECOND_MS ... DAY_MS; the names HOUR_S / DAY_S, HOUR, DAY are kept out).
No module of the server converts by hand: a number of milliseconds or seconds in a span
(1000, 1800, 3600, 60000, 86400, 3600000, 86400000) multiplied or divided by is a conversion
written out again; clock.to_ms / clock.to_s do it, at the boundaries clock.py names."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVER = REPO / "sim" / "server"
SPANS = {1000, 1800, 3600, 60_000, 86_400, 3_600_000, 86_400_000}
OPS = {"*", "/", "//", "*=", "/=", "//=", "%", "%="}
CLOCK = "clock.py"
# the web handlers are being rewritten as module-level routes; they convert through clock
# when that lands, and this entry goes
NOT_YET = {"web/routes.py"}
NAMES = {"SECOND_MS", "MINUTE_MS", "HOUR_MS", "DAY_MS", "HOUR_S", "DAY_S", "HOUR", "DAY"}


def _number(text: str) -> float | None:
    try:
        return float(text.replace("_", ""))
    except ValueError:
        return None


def conversions(source: str) -> list[tuple[int, str]]:
    """(line, text) of each span constant written as an operand of * / // or %."""
    toks = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
            if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT,
                              tokenize.INDENT, tokenize.DEDENT)]
    out = []
    for i, t in enumerate(toks):
        if t.type != tokenize.NUMBER or _number(t.string) not in SPANS:
            continue
        before = toks[i - 1].string if i > 0 else ""
        after = toks[i + 1].string if i + 1 < len(toks) else ""
        if before in OPS or after in OPS:
            out.append((t.start[0], t.line.strip()))
    return out


def span_names(source: str) -> list[tuple[int, str]]:
    """(line, name) of each module-level span constant defined (they live in clock.py)."""
    out = []
    for node in ast.parse(source).body:
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        out += [(node.lineno, t.id) for t in targets
                if isinstance(t, ast.Name) and t.id in NAMES]
    return out


def _server_files() -> list[tuple[str, str]]:
    return [(p.relative_to(SERVER).as_posix(), p.read_text())
            for p in sorted(SERVER.rglob("*.py"))]


def test_the_check_sees_a_conversion_by_hand():
    assert conversions("t = now_ms / 1000\n") == [(1, "t = now_ms / 1000")]
    assert conversions("x = int(s * 1_000)\n") != []
    assert conversions("d = 7 * 86400 + h\n") != []
    assert conversions("m = ms // 60_000\n") != []
    assert conversions("n = 1000.0 * s\n") != []
    assert conversions("LIMIT = 1000  # rows\nNOTE_MAX = 1000\nk = f(1000)\n") == []
    assert conversions("s = '/ 1000'  # * 1000\n") == []
    assert span_names("HOUR_MS = 3_600_000\nDAY = 86400.0\nx = 1\n") == [(1, "HOUR_MS"),
                                                                      (2, "DAY")]


def test_no_module_of_the_server_converts_time_by_hand():
    found = [f"sim/server/{name}:{line}: {text}"
             for name, src in _server_files() if name != CLOCK and name not in NOT_YET
             for line, text in conversions(src)]
    assert found == [], "convert with clock.to_ms / clock.to_s, spans from clock:\n" + \
        "\n".join(found)


def test_spans_are_named_once_in_the_clock_module():
    found = [f"sim/server/{name}:{line}: {what}"
             for name, src in _server_files() if name != CLOCK
             for line, what in span_names(src)]
    assert found == [], "import the span from sim/server/clock.py:\n" + "\n".join(found)
