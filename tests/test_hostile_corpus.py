"""The CI subset of the hostile-input corpus (benchmarks/hostile_inputs.py): every case here has
its fix landed and must give a clear one-line error (or be skipped and reported), with no input
modified and nothing written outside the output folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from hostile_cases import all_cases, build_bases
from hostile_fixtures import light_run
from hostile_inputs import Case, Outcome, classify, run_corpus

CI_CASES = (
    "labelme-truncated",
    "labelme-nan-point",
    "labelme-deep-flags",
    "labelme-bad-regex",
    "coco-deep",
    "coco-truncated",
    "via-deep",
    "aasce-non-numeric",
    "masks-values-list",
    "images-zero-byte",
    "clean-no-images",
    "clean-bad-regex",
    "split-fraction-nan",
    "split-dup-groups-bad",
    "export-format-bogus",
    "deidentify-zero-byte",
    "labelme-group-id-str",
    "labelme-image-data-garbage",
    "labelme-regex-no-group",
    "ingest-classes-malformed",
    "deidentify-1e9-frames",
    "evaluate-checkpoint-bogus",
    "evaluate-config-bomb",
    "report-log-garbage",
    "report-config-bomb",
)
"""Cases needing a run get :func:`light_run` (no checkpoints: they are refused or handled before
a model is loaded); the full corpus trains a real one."""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    root = tmp_path_factory.mktemp("hostile")
    cases = {c.name: c for c in all_cases()}
    chosen = [cases[name] for name in CI_CASES]
    bases = build_bases(root / "_base", need_run=False)
    bases["run"] = light_run(root / "_base", bases["ds"])
    return {o.case.name: o for o in run_corpus(chosen, root / "cases", bases, timeout=60, workers=2)}


@pytest.mark.parametrize("name", CI_CASES)
def test_landed_fixes_give_clear_errors(outcomes: dict[str, Outcome], name: str) -> None:
    outcome = outcomes[name]
    assert outcome.cls in ("clear", "handled"), (outcome.cls, outcome.message)
    assert not outcome.modified and not outcome.outside


def test_classifier_tells_the_classes_apart(tmp_path: Path) -> None:
    case = Case("t", "kind", ["clean"], lambda d: None, ("bad.json",))
    assert classify(case, 2, "", "error: bad.json: broken JSON (line 1)\n", tmp_path)[0] == "clear"
    assert classify(case, 2, "", "error: something failed\n", tmp_path)[0] == "unclear"
    assert classify(case, 2, "", "error: bad.json\nsecond line\n", tmp_path)[0] == "unclear"
    trace = "Traceback (most recent call last):\n  File x\nKeyError: 'id'\n"
    assert classify(case, 1, "", trace, tmp_path) == ("traceback", "KeyError: 'id'")
    assert classify(case, None, "", "", tmp_path)[0] == "hang"
    assert classify(case, 0, "", "", tmp_path)[0] == "silent"
    lenient = Case("t", "kind", ["clean"], lambda d: None, ("x",), ok=lambda d, o: None)
    assert classify(lenient, 0, "", "WARNING  skipped bad.json\n", tmp_path)[0] == "handled"
