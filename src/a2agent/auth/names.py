"""Readable generated names for keys created without a label, e.g. ``amber-falcon``."""

from __future__ import annotations

import secrets

ADJECTIVES = (
    "amber", "azure", "bold", "brave", "bright", "calm", "clever", "coral", "crisp", "dawn",
    "eager", "fair", "fleet", "gentle", "golden", "grand", "happy", "ivory", "jade", "keen",
    "kind", "lively", "lucky", "lunar", "merry", "misty", "noble", "olive", "plain", "proud",
    "quick", "quiet", "rapid", "royal", "ruby", "sage", "silver", "sleek", "solar", "steady",
    "sunny", "swift", "tidy", "topaz", "vivid", "warm", "wise", "zesty",
)
NOUNS = (
    "badger", "beacon", "bison", "brook", "canyon", "cedar", "comet", "crane", "delta", "dune",
    "falcon", "fern", "finch", "fjord", "forest", "fox", "glacier", "harbor", "hawk", "heron",
    "island", "lark", "lotus", "lynx", "maple", "meadow", "mesa", "otter", "owl", "panda",
    "pine", "planet", "puffin", "quartz", "raven", "reef", "river", "robin", "sparrow", "summit",
    "tiger", "tulip", "valley", "willow", "wolf", "wren", "yak", "zebra",
)


def readable_name(taken: set[str]) -> str:
    """A two-word name not in ``taken`` (the account's key names); a number only if needed."""
    for _ in range(20):
        name = f"{secrets.choice(ADJECTIVES)}-{secrets.choice(NOUNS)}"
        if name not in taken:
            return name
    n = 2
    while f"{name}-{n}" in taken:
        n += 1
    return f"{name}-{n}"
