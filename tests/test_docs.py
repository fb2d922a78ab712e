"""The Markdown tables of the docs render whole: a table cut by a paragraph shows its remaining rows
as a line of pipes, which no reader notices in the source and every reader sees on the page."""

import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt  # a dependency of rich, so always installed with hypotune

ROOT = Path(__file__).parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md", ROOT / "examples" / "README.md"]
SEPARATOR = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")
PIPE = re.compile(r"(?<!\\)\|")  # GFM splits cells on every unescaped pipe, inside code spans too


def markdown() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


def code_lines(tokens: list) -> set[int]:
    """Lines of fenced and indented code: a pipe there is shell or sample output, not a table."""
    spans = (t.map for t in tokens if t.type in ("fence", "code_block") and t.map)
    return {line for start, end in spans for line in range(start, end)}


def pipe_blocks(lines: list[str], skip: set[int]) -> list[tuple[int, int]]:
    """(start, end) of each run of lines that start with `|`, outside code: what the author meant
    as a table."""
    blocks: list[tuple[int, int]] = []
    for number, line in enumerate(lines):
        if number in skip or not line.startswith("|"):
            continue
        if blocks and blocks[-1][1] == number:
            blocks[-1] = (blocks[-1][0], number + 1)
        else:
            blocks.append((number, number + 1))
    return blocks


def cells(row: str) -> int:
    return len(PIPE.split(row.strip().removeprefix("|").removesuffix("|")))


def rendered_tables(tokens: list) -> dict[int, tuple[int, int]]:
    """First source line of each table markdown-it renders -> (its rows, the line after it)."""
    tables: dict[int, tuple[int, int]] = {}
    start = None
    for token in tokens:
        if token.type == "table_open":
            start, rows = token.map, 0
        elif token.type == "tr_open" and start is not None:
            rows += 1
        elif token.type == "table_close" and start is not None:
            tables[start[0]] = (rows, start[1])
            start = None
    return tables


def table_problems(path: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with each table of a Markdown file, as 'file:line: what'."""
    text = path.read_text()
    lines = text.splitlines()
    tokens = markdown().parse(text)
    tables = rendered_tables(tokens)
    problems = []
    for start, end in pipe_blocks(lines, code_lines(tokens)):
        where = f"{path.relative_to(root)}:{start + 1}"
        block = lines[start:end]
        if len(block) < 2 or not SEPARATOR.match(block[1]):
            problems.append(
                f"{where}: rows with no header and |---| separator above them (a table cut short?)"
            )
            continue
        widths = {cells(row) for row in block}
        if len(widths) > 1:  # the separator counts too: GFM needs one dash cell per column
            problems.append(f"{where}: rows of {sorted(widths)} cells; every row needs the header's")
        rows, after = tables.get(start, (0, start))
        if rows != len(block) - 1 or after != end:  # the separator is no row of the rendered table
            lost = f"renders as {rows} rows, not {len(block) - 1}"
            problems.append(f"{where}: {lost} (a line without a leading | joins it, or it is no table)")
    return problems


@pytest.mark.parametrize("path", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_table_is_whole(path):
    assert table_problems(path) == []


def test_a_table_cut_by_a_paragraph_is_found(tmp_path):
    """The check itself: the docs once had a paragraph between a table and its last row."""
    cut = "| kind | fields |\n|---|---|\n| `better` | `arm` |\n\nA paragraph.\n| `trend` | `factor` |\n"
    joined = "| kind | fields |\n|---|---|\n| `better` | `arm` |\nA paragraph.\n"
    lost = "| kind | fields |\n|---|---|\n| `better` | `arm` |\n`trend` | `factor` |\n"
    short = "| kind | fields |\n|---|---|\n| `better` |\n"
    found = []
    for name, text in (("cut", cut), ("joined", joined), ("lost", lost), ("short", short)):
        (tmp_path / f"{name}.md").write_text(text)
        found += table_problems(tmp_path / f"{name}.md", tmp_path)
    assert [problem.split(":")[0] for problem in found] == ["cut.md", "joined.md", "lost.md", "short.md"]
