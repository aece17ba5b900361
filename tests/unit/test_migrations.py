"""Unit tier: the migrations form one line (parallel branches each adding a migration must be
re-chained when merged, or `db upgrade` fails with "multiple heads")."""

from __future__ import annotations

from alembic.config import Config
from alembic.script import ScriptDirectory

from a2agent.store.db import MIGRATIONS_DIR


def test_migrations_have_one_head_and_one_base() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(cfg)
    assert len(script.get_heads()) == 1, script.get_heads()
    assert len(script.get_bases()) == 1, script.get_bases()
    revisions = list(script.walk_revisions())
    assert [r.revision for r in reversed(revisions)] == sorted(r.revision for r in revisions)
