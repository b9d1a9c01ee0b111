"""Class-name remapping (``--classes``) and vertebra level names."""

from __future__ import annotations

from dataclasses import dataclass, field

from spinekit.errors import UsageError
from spinekit.levels import is_level

VERTEBRA = "vertebra"


@dataclass(frozen=True)
class ClassMap:
    """Remapping of source labels to dataset classes.

    Built from ``"F=facet,E=ventral,TP"``: ``A=B`` renames A to B, ``A`` keeps
    A, ``A=`` drops A. When any entry is given, labels not listed are dropped
    (and counted in the ingest report). Without entries every label is kept,
    and labels that are vertebra levels (``L4``) become class ``vertebra`` with
    that level.
    """

    mapping: dict[str, str | None] = field(default_factory=dict)
    order: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: str | None) -> ClassMap:
        """Parse a ``--classes`` value; raises ValueError on an empty or duplicated entry."""
        if spec is None or not spec.strip():
            return cls()
        mapping: dict[str, str | None] = {}
        order: list[str] = []
        for entry in spec.split(","):
            source, sep, target = (part.strip() for part in entry.partition("="))
            if not source:
                raise UsageError(f"--classes: empty class name in {spec!r}")
            if source in mapping:
                raise UsageError(f"--classes: {source!r} given twice")
            if "=" in target:
                raise UsageError(f"--classes: {entry.strip()!r} has more than one '=' (use A=B to "
                                 "rename, A to keep, A= to drop)")
            name = (target or None) if sep else source
            mapping[source] = name
            if name is not None and name not in order:
                order.append(name)
        return cls(mapping=mapping, order=tuple(order))

    def resolve(self, label: str, attributes: dict[str, str]) -> tuple[str | None, dict[str, str]]:
        """Dataset class for a source label (None = dropped) and updated attributes."""
        if self.mapping:
            return self.mapping.get(label), attributes
        if is_level(label) and "level" not in attributes:
            return VERTEBRA, {**attributes, "level": label}
        return label, attributes
