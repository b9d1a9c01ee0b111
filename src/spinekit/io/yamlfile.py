"""YAML reading with limits: file size, nesting depth and the size after alias expansion.

``yaml.safe_load`` runs no code, but an alias bomb ("billion laughs": a few
anchors, each a list of aliases of the previous one) expands to ~10^9 nodes as
soon as anything walks the result. :func:`load_yaml_text` composes the node
graph first, counts its nodes as they would be after expansion (each alias
counted at every use, shared sub-graphs counted once per use via memoisation,
so the count itself is linear in the text) and refuses anything over
:data:`MAX_YAML_NODES` before constructing Python objects. Recursive aliases
count as too large; nesting deeper than the parser's recursion allows is refused
as too deep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from spinekit.errors import InputError

MAX_YAML_BYTES = 1_000_000
"""Largest YAML file read (a run config is a few hundred bytes)."""
MAX_YAML_NODES = 100_000
"""Most nodes after alias expansion."""


class YamlLimitError(ValueError):
    """YAML text that is broken or over a limit; the message is one line."""


def _expanded_size(root: yaml.Node, limit: int) -> int:
    memo: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        memo[key] = limit + 1  # a node reached again while being counted: a recursive alias
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
                if total > limit:
                    break
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
                if total > limit:
                    break
        memo[key] = total
        return total

    return size(root)


def _problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem or exc.context} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split())


def load_yaml_text(text: str, *, max_nodes: int = MAX_YAML_NODES) -> Any:
    """``yaml.safe_load`` with the expanded-size and depth limits; YamlLimitError otherwise."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, max_nodes) > max_nodes:
            raise YamlLimitError(f"more than {max_nodes} values after expanding aliases "
                                 "(an alias bomb?); refused")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise YamlLimitError(f"broken YAML ({_problem(exc)})") from exc
    except RecursionError as exc:
        raise YamlLimitError("YAML nested too deeply; refused") from exc
    finally:
        loader.dispose()


def read_yaml(path: str | Path, *, what: str = "YAML file", max_bytes: int = MAX_YAML_BYTES) -> Any:
    """Read a YAML file with the limits above; InputError naming the file on any problem."""
    p = Path(path)
    if p.is_dir():
        raise InputError(p, f"{what} is a folder, not a file")
    if not p.is_file():
        raise InputError(p, f"{what} not found")
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise InputError(p, f"{what} is {size} bytes, over the limit of {max_bytes}")
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(p, f"{what} is not UTF-8 text") from exc
    except OSError as exc:
        raise InputError(p, f"cannot read {what} ({exc.strerror or exc})") from exc
    try:
        return load_yaml_text(text)
    except YamlLimitError as exc:
        raise InputError(p, str(exc)) from exc
