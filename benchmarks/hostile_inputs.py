"""Hostile-input corpus: malformed files and arguments against every spinekit command.

Run from the repository root (by hand; about 5 minutes on 2 cores):

    .venv/bin/python benchmarks/hostile_inputs.py [--only SUBSTRING] [--workers 2] [--fast]

Every case builds its inputs in its own folder under a temporary corpus root,
runs ``.venv/bin/spinekit ...`` in a subprocess with a timeout and is classified:

- ``clear``: exit code != 0 and one error line, no traceback, naming the
  offending file, field or option (one of the case's ``names``);
- ``handled``: exit 0, and the case's own check says the bad input was dealt
  with (e.g. the broken file is listed as skipped in ``ingest_report.json``);
- ``traceback``: a Python traceback printed; ``hang``: the timeout hit;
- ``silent``: exit 0 and the case's check says the bad input went through
  (cases without a check must be refused);
- ``unclear``: exit code != 0 but the message is several lines or names none
  of the case's ``names``.

Independently, ``inputs modified`` (a file of the case folder changed or
vanished outside the case's output paths) and ``writes outside`` (a new file
outside them) are flagged. HOME and TMPDIR point into the case folder and are
ignored. The case catalogue: :mod:`hostile_cases` (LabelMe, COCO, VIA),
:mod:`hostile_sources` (AASCE, masks, images), :mod:`hostile_commands` (clean,
split, export, deidentify, train), :mod:`hostile_model_cases` (evaluate, predict,
measure, report, compare); helpers in :mod:`hostile_fixtures`; the CI subset in
``tests/test_hostile_corpus.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

SPINEKIT = Path(sys.executable).with_name("spinekit")
IGNORED = (".home", ".tmp")
CLASSES = ("clear", "handled", "traceback", "hang", "silent", "unclear", "setup-error")
Check = Callable[[Path, str], "str | None"]
_BOX = re.compile(r"[\u2500-\u257f]")
_LOG = re.compile(r"^(INFO|WARNING|DEBUG)\s")


@dataclass
class Case:
    """One hostile input: ``setup(case_dir)`` writes it, ``args`` run (``{d}`` = case dir).

    ``names``: tokens one of which a clear error must contain. ``outputs``: paths
    (relative to the case dir) the command may write. ``ok``: for exit 0, returns
    None when the bad input was handled, else why it went through silently.
    ``needs``: base artefacts copied in (``labelme``, ``ds``, ``run``).
    """

    name: str
    kind: str
    args: list[str]
    setup: Callable[[Path], None]
    names: tuple[str, ...]
    outputs: tuple[str, ...] = ("out",)
    ok: Check | None = None
    needs: tuple[str, ...] = ()
    fast: bool = False


@dataclass
class Outcome:
    case: Case
    cls: str
    rc: int | None
    message: str
    seconds: float
    modified: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)


def _digest(path: Path) -> str:
    st = path.stat()
    if st.st_size > 8 << 20:  # checkpoints: identity and size, not content
        return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> digest of every file under ``root`` (HOME/TMPDIR folders left out)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d not in IGNORED]
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                out[os.fsdecode(rel_dir / name)] = _digest(path)
    return out


def _allowed(rel: str, outputs: Iterable[str]) -> bool:
    return any(rel == o or rel.startswith(o.rstrip("/") + "/") for o in outputs)


def error_lines(text: str) -> list[str]:
    """The lines of ``text`` that make up the error message (no log lines, no box art)."""
    lines = [_BOX.sub("", line).strip() for line in text.splitlines()]
    return [line for line in lines if line and not _LOG.match(line)]


def classify(case: Case, rc: int | None, stdout: str, stderr: str, case_dir: Path) -> tuple[str, str]:
    """``(class, message)`` of one finished (``rc`` None: timed out) run."""
    both = stdout + "\n" + stderr
    if rc is None:
        return "hang", "timed out"
    if "Traceback (most recent call last)" in both:
        last = [line for line in both.splitlines() if line.strip()][-1:]
        return "traceback", last[0].strip() if last else "traceback"
    if rc == 0:
        reason = "exit 0 on bad input" if case.ok is None else case.ok(case_dir, both)
        if reason:
            return "silent", reason
        notes = error_lines(stderr)
        return "handled", notes[-1] if notes else "exit 0"
    lines = error_lines(stderr) or error_lines(stdout)
    message = " | ".join(lines[-3:])
    if len(lines) != 1:
        return "unclear", message or f"exit {rc} with no message"
    text = lines[0].lower()
    named = any(token.lower() in text for token in case.names)
    return ("clear" if named else "unclear"), lines[0]


def run_case(case: Case, root: Path, bases: dict[str, Path], timeout: float) -> Outcome:
    """Build, run and classify one case in ``root/case.name``."""
    case_dir = root / case.name
    case_dir.mkdir(parents=True)
    for need in case.needs:
        _copy_base(bases[need], case_dir / need)
    try:
        case.setup(case_dir)
    except Exception as exc:  # a broken case must not stop the corpus
        return Outcome(case, "setup-error", None, f"{type(exc).__name__}: {exc}"[:200], 0.0)
    for sub in IGNORED:
        (case_dir / sub).mkdir(exist_ok=True)
    before = snapshot(case_dir)
    env = {
        **os.environ,
        "HOME": str(case_dir / ".home"),
        "TMPDIR": str(case_dir / ".tmp"),
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "SPINEKIT_SALT": "",
    }
    args = [str(SPINEKIT), *(a.replace("{d}", str(case_dir)) for a in case.args)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(args, cwd=case_dir, env=env, capture_output=True, timeout=timeout, check=False)
        rc: int | None = proc.returncode
        stdout, stderr = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired:
        rc, stdout, stderr = None, "", ""
    seconds = time.perf_counter() - start
    cls, message = classify(case, rc, stdout, stderr, case_dir)
    after = snapshot(case_dir)
    modified = sorted(k for k, v in before.items() if after.get(k) != v and not _allowed(k, case.outputs))
    outside = sorted(k for k in after if k not in before and not _allowed(k, case.outputs))
    return Outcome(case, cls, rc, message, seconds, modified, outside)


def _copy_base(src: Path, dst: Path) -> None:
    """Copy a base artefact; files over 8 MiB (checkpoints) are hard-linked."""

    def copy(s: str, d: str) -> object:
        if os.path.getsize(s) > 8 << 20:
            os.link(s, d)
            return d
        return shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=copy)


def run_corpus(
    cases: list[Case], root: Path, bases: dict[str, Path], *, timeout: float = 60.0, workers: int = 2
) -> list[Outcome]:
    """Run every case (``workers`` at a time); results in case order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda c: run_case(c, root, bases, timeout), cases))


def print_table(outcomes: list[Outcome]) -> None:
    """Counts per class and per command, then every case that is not clear/handled."""
    counts = Counter(o.cls for o in outcomes)
    print(
        f"\n{len(outcomes)} cases: "
        + ", ".join(f"{c} {counts.get(c, 0)}" for c in CLASSES)
        + f"; inputs modified {sum(bool(o.modified) for o in outcomes)}, writes outside "
        f"{sum(bool(o.outside) for o in outcomes)}"
    )
    by_command: dict[str, Counter[str]] = {}
    for o in outcomes:
        by_command.setdefault(o.case.args[0], Counter())[o.cls] += 1
    print("\n| command | " + " | ".join(CLASSES) + " |\n| --- |" + " --- |" * len(CLASSES))
    for command, tally in sorted(by_command.items()):
        print(f"| {command} | " + " | ".join(str(tally.get(c, 0)) for c in CLASSES) + " |")
    print("\nnot clear:")
    for o in outcomes:
        if o.cls not in ("clear", "handled") or o.modified or o.outside:
            extra = (f" [modified: {', '.join(o.modified)}]" if o.modified else "") + (
                f" [outside: {', '.join(o.outside)}]" if o.outside else ""
            )
            print(f"  {o.cls:9s} {o.case.name} ({o.case.kind}): {o.message[:220]}{extra}")


def main() -> None:
    from hostile_cases import all_cases, build_bases

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="Run only cases whose name contains one of these (comma-separated).")
    parser.add_argument("--fast", action="store_true", help="Only the CI subset.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--keep", action="store_true", help="Keep the corpus folder.")
    opts = parser.parse_args()
    wanted = opts.only.split(",") if opts.only else []
    cases = [
        c
        for c in all_cases()
        if (not wanted or any(w in c.name for w in wanted)) and (c.fast or not opts.fast)
    ]
    root = Path(tempfile.mkdtemp(prefix="spinekit-hostile-"))
    try:
        start = time.perf_counter()
        bases = build_bases(root / "_base", need_run=any("run" in c.needs for c in cases))
        print(f"bases built in {time.perf_counter() - start:.0f} s; running {len(cases)} cases")
        outcomes = run_corpus(cases, root / "cases", bases, timeout=opts.timeout, workers=opts.workers)
        print_table(outcomes)
        print(f"\ntotal {time.perf_counter() - start:.0f} s")
    finally:
        if opts.keep:
            print(f"corpus kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
