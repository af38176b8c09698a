# SPDX-License-Identifier: MIT
"""`python -m mimamori [--db F] [--clock C] [--host H] [--port P] [--cert F --key F]`: serve.

`make server ARGS="..."` runs this. Any other `mimamori` command works too
(`python -m mimamori device list`): without a command, the command is `serve`.
"""

import sys

from mimamori.cli import main


def _argv(argv: list[str]) -> list[str]:
    i = 0
    while i < len(argv) and argv[i] in ("--db", "--clock"):
        i += 2
    while i < len(argv) and argv[i].startswith(("--db=", "--clock=")):
        i += 1
    if i >= len(argv) or argv[i].startswith("-") and argv[i] not in ("-h", "--help"):
        return argv[:i] + ["serve"] + argv[i:]
    return argv


if __name__ == "__main__":
    sys.exit(main(_argv(sys.argv[1:])))
