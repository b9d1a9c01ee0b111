"""Vertebra level names, the one list every stage uses.

``LEVELS`` runs cranio-caudally: C1-C7, T1-T12, L1-L6 (a sixth lumbar vertebra
exists in some spines), S1-S5, Co (coccyx). ``S`` alone (the sacrum as one
instance) is also accepted as a level name and ordered as S1.
"""

from __future__ import annotations

import re

LEVELS: tuple[str, ...] = (
    *(f"C{i}" for i in range(1, 8)),
    *(f"T{i}" for i in range(1, 13)),
    *(f"L{i}" for i in range(1, 7)),
    *(f"S{i}" for i in range(1, 6)),
    "Co",
)
LEVEL_PATTERN = re.compile(r"^(C[1-7]|T1[0-2]|T[1-9]|L[1-6]|S[1-5]?|Co)$")
AASCE_LEVELS: tuple[str, ...] = LEVELS[LEVELS.index("T1"): LEVELS.index("L5") + 1]
"""The 17 levels of AP spine X-rays in the AASCE set, T1..L5, top-down."""

_INDEX = {name: k for k, name in enumerate(LEVELS)} | {"S": LEVELS.index("S1")}


def is_level(name: str) -> bool:
    """True when ``name`` is a vertebra level such as ``L4``, ``T12`` or ``S``."""
    return bool(LEVEL_PATTERN.match(name))


def level_index(name: str) -> int:
    """Cranio-caudal position of a level (``C1`` = 0); KeyError for other names."""
    return _INDEX[name]
