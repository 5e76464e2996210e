"""House rules a reader relies on, checked on every file outside `benchmarks/`: files under 400 lines,
functions under 60, and code that names its reasons instead of a tracker number or a file outside the repo."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rollout", "rewards", "trainers", "evaluation", "recipes", "tests")
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60
OUTSIDE_REFERENCES = re.compile(r"issue [0-9]|issues? #[0-9]|EAGER\.md|TRL\.md|VLLM_CPU\.md|shared spec|the spec\b",
                                re.IGNORECASE)


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_there_are_sources_to_check():
    assert len(sources()) > 50


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_file_and_function_lengths(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_FILE_LINES, f"{path.name}: split it by job"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.name}: {long}"


def test_code_names_its_reasons_not_trackers_or_outside_files():
    hits = []
    for path in sources():
        if path == Path(__file__):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if OUTSIDE_REFERENCES.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "\n".join(hits)


def module_imports(package: str) -> dict[str, set[str]]:
    """Per module of `package`, the modules of the same package it imports anywhere (inside functions too), but
    for the names it imports for annotations only (under `if TYPE_CHECKING:`)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).glob("*.py")):
        names = set()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
                node.body = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(f"{package}."):
                names.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                names |= {a.name.split(".")[1] for a in node.names if a.name.startswith(f"{package}.")}
        graph[path.stem] = names - {path.stem}
    return graph


@pytest.mark.parametrize("package", ["rollout", "trainers"])
def test_no_module_imports_one_that_imports_it_back(package):
    """A reader follows imports one way: no circle, even through a function-level import."""
    graph = module_imports(package)

    def reaches(start: str, seen: set[str]) -> set[str]:
        for name in graph.get(start, ()):
            if name not in seen:
                seen.add(name)
                reaches(name, seen)
        return seen

    circles = sorted(m for m in graph if m in reaches(m, set()) and m != "__init__")
    assert not circles, f"{package}: these modules import themselves back through others: {circles}"
