# SPDX-License-Identifier: MIT
"""The server's modules stand on their own: no import circles among them (imports inside
functions count: they only hide a circle), each imports in an interpreter where none of the
project's modules were imported before it, outside the source tree, and every module is
imported under one name only (the server as `mimamori`, the bulb's shared files as
`mimamori_firmware`, as pyproject.toml installs them)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVER = REPO / "sim" / "server"


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(SERVER.rglob("*.py")):
        parts = ("mimamori", *p.relative_to(SERVER).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _imported(p: Path) -> set[str]:
    """Every name the file imports, anywhere in its code (`from a import b` gives a and a.b)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(p.read_text(), str(p))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def _graph() -> dict[str, set[str]]:
    """module -> the server modules it imports, anywhere in its code."""
    mods = _modules()
    return {m: {n for n in _imported(p) if n in mods and n != m} for m, p in mods.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_circle_finder_finds_a_circle_hidden_in_a_function() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_no_server_module_imports_itself_round_a_circle() -> None:
    graph = _graph()
    assert "mimamori.sql" in graph["mimamori.storage"]  # the graph sees imports at all
    assert "mimamori.app" in graph["mimamori.cli"]  # and those inside a function
    assert _circles(graph) == []


def test_no_server_module_imports_the_simulation() -> None:
    """The server's package holds the server: the harness that starts it, the host-side bulb
    client and the sample pilot live beside it in sim/, and the server never imports them (nor
    the tools, the benchmarks or the tests, none of which `pip install .` installs)."""
    outside = {}
    for m, p in _modules().items():
        bad = sorted(n for n in _imported(p)
                     if n.split(".")[0] in ("sim", "firmware", "tools", "bench", "tests"))
        if bad:
            outside[m] = bad
    assert outside == {}


def test_each_server_module_imports_with_no_other_project_module_loaded_first(
        tmp_path: Path) -> None:
    script = (
        "import importlib, sys\n"
        "bad = []\n"
        "for m in sys.argv[1:]:\n"
        "    for k in [k for k in sys.modules\n"
        "              if k.split('.')[0] in ('mimamori', 'mimamori_firmware')]:\n"
        "        del sys.modules[k]\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except Exception as e:\n"
        "        bad.append(f'{m}: {e!r}')\n"
        "print('\\n'.join(bad))\n"
    )
    mods = list(_modules())
    assert len(mods) > 30
    # from an empty folder: the installed package, not the source tree's sim/ on the path
    r = subprocess.run([sys.executable, "-c", script, *mods], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "", r.stdout


def test_every_module_is_imported_under_its_installed_name_only() -> None:
    """`sim.server.x` and `mimamori.x` (or `firmware.record` and `mimamori_firmware.record`)
    would be two module objects of one file, each with its own state: the code everywhere
    (server, harness, tools, benchmarks, tests) names them as installed."""
    bad = []
    for d in ("sim", "tools", "bench", "tests"):
        for p in sorted((REPO / d).rglob("*.py")):
            for n in _imported(p):
                top = n.split(".")
                if top[0] == "firmware" or top[:2] == ["sim", "server"]:
                    bad.append(f"{p.relative_to(REPO)}: {n}")
    assert bad == []
