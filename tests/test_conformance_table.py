"""docs/conformance.md stays true: every row of every table names tests that exist and, unless
the rule is marked not applicable, `module:function` definitions that exist."""

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOC = ROOT / "docs" / "conformance.md"
COLUMNS = ["Section", "Rule", "Enforced in", "Test"]
NOT_APPLICABLE = "not applicable:"


def _cells(line: str) -> list[str]:
    # A '|' inside backticks is still a separator in Markdown tables; the rules here use none.
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _rows() -> list[tuple[int, dict[str, str]]]:
    """(line number, cells by column) for every body row of every table in the document."""
    rows = []
    header = None
    for number, line in enumerate(DOC.read_text().splitlines(), start=1):
        if not line.lstrip().startswith("|"):
            header = None
            continue
        cells = _cells(line)
        if header is None:
            header = cells
            assert header == COLUMNS, f"line {number}: table columns must be {COLUMNS}"
        elif not all(re.fullmatch(r":?-+:?", cell) for cell in cells):
            assert len(cells) == len(header), f"line {number}: {len(cells)} cells"
            rows.append((number, dict(zip(header, cells, strict=True))))
    return rows


ROWS = _rows()


def _references(cell: str) -> list[str]:
    """The backticked items of a cell, or the whole cell when it has none."""
    return re.findall(r"`([^`]+)`", cell) or ([cell] if cell else [])


@cache
def _definitions(path: Path) -> frozenset[str]:
    """Every function in a file, as `name` for module level and `Class.name` for methods."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(f"{node.name}.{item.name}" for item in node.body
                         if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef))
    return frozenset(names)


def _missing_definition(reference: str) -> str | None:
    module, colon, function = reference.partition(":")
    path = ROOT / module
    if not colon or not function:
        return f"{reference!r} is not module:function"
    if not path.is_file():
        return f"no file {module}"
    if function not in _definitions(path):
        return f"{module} defines no {function}"
    return None


def _missing_test(reference: str) -> str | None:
    path, separator, name = reference.partition("::")
    name = re.sub(r"\[.*\]$", "", name)  # a parametrized id names its function
    if not separator or not name:
        return f"{reference!r} is not a pytest node id"
    if not (ROOT / path).is_file():
        return f"no test file {path}"
    if name.replace("::", ".") not in _definitions(ROOT / path):
        return f"{path} has no test {name}"
    return None


def test_the_document_has_rows():
    assert len(ROWS) >= 60


@pytest.mark.parametrize(("line", "row"), ROWS, ids=[f"line{line}" for line, _ in ROWS])
def test_row_names_existing_tests_and_definitions(line, row):
    assert row["Section"] and row["Rule"], f"line {line}: section and rule must be given"
    tests = _references(row["Test"])
    assert tests, f"line {line}: the Test cell is empty"
    problems = [problem for test in tests if (problem := _missing_test(test))]
    enforced = row["Enforced in"]
    assert enforced, f"line {line}: the Enforced in cell is empty"
    if not enforced.startswith(NOT_APPLICABLE):
        problems += [problem for reference in _references(enforced)
                     if (problem := _missing_definition(reference))]
    assert not problems, f"line {line}: " + "; ".join(problems)


def test_a_broken_row_is_caught():
    assert _missing_test("tests/test_conformance_table.py::test_not_there[x]")
    assert _missing_test("tests/nowhere.py::test_x")
    assert _missing_definition("dtn/bundle/decoder.py:_not_there")
    assert _missing_definition("dtn/bundle/decoder.py")
    assert _missing_test("tests/test_conformance_table.py::test_a_broken_row_is_caught[p]") is None
    assert _missing_definition("dtn/bundle/blocks.py:PrimaryBlock.encode") is None
