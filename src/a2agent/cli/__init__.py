"""`a2agent` command line: serve, database, and every admin action.

Bad input exits non-zero with one clear line on stderr (configuration errors exit 2).
"""

from __future__ import annotations

from a2agent.cli import accounts, catalog, payments, server_db  # noqa: F401 - they register the commands
from a2agent.cli.base import cli


def main() -> None:
    cli(prog_name="a2agent")

