"""``make charts``: the chart, docker-compose.yml, Dockerfile and dashboard checks of the
:mod:`chartcheck` package beside this file (``--values-table`` prints the chart README's values table)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chartcheck import *  # noqa: F403  (the checks, for tests that load this file)
from chartcheck import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
