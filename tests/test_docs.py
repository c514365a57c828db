"""The documentation's own checks: every internal link and #anchor between README.md and
docs/*.md resolves, every docs page is in the site's nav, docs/cli.md is what
docs/gen_cli.py writes from today's parser, the blocks docs/gen_outputs.py fills are
well-formed and known to it, and the README stays a newcomer's page (at most 350 lines) with
the two set-up commands that CI runs.

Anchors are computed as GitHub and the site (mkdocs.yml: pymdownx's slugify, lower case)
compute them; a test checks the two rules agree on every heading of the pages.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target) and ![alt](target), the target up to a space (a "title") or ")".
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(\S+)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
OPEN_MARK = re.compile(r"^<!-- output: ([a-z0-9-]+) -->$")
CLOSE_MARK = "<!-- /output -->"


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fenced = [], None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if match:
            if fenced is None:
                fenced = match.group(1)
            elif match.group(1) == fenced:
                fenced = None
            continue
        if fenced is None:
            lines.append((number, line))
    return lines


def slugify(heading: str) -> str:
    """A heading's anchor as GitHub makes it: the text without Markdown marks, lower case,
    punctuation and symbols dropped (letters, digits, `_`, `-` and spaces kept), each space
    a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def headings(path: Path) -> list[str]:
    return [m.group(2) for _, line in prose_lines(path.read_text(encoding="utf-8"))
            if (m := HEADING.match(line))]


def anchors(path: Path) -> set[str]:
    """The page's anchors. A heading repeated on a page gets a suffix that GitHub and the
    site spell differently (-1 against _1), so only its first occurrence is linkable."""
    return {slugify(h) for h in headings(path)}


def links(path: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        bare = CODE_SPAN.sub("", line)
        found += [(number, m.group(1)) for m in LINK.finditer(bare)]
        found += [(number, m.group(1)) for m in REFERENCE.finditer(bare)]
    return found


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """One line for each link of `page` that leads nowhere (`root`: the repository; its
    docs/ is the site, whose pages may not link out of it)."""
    root, page = root.resolve(), page.resolve()
    docs, problems = root / "docs", []
    for number, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto: ...
            continue
        where = f"{page.relative_to(root)}:{number}: {target}"
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            problems.append(f"{where}: no such file")
            continue
        if page.parent == docs and not dest.is_relative_to(docs):
            problems.append(f"{where}: leaves docs/ (the site has no such page)")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where}: no heading with anchor #{anchor} in "
                            f"{dest.relative_to(root)}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_internal_links_resolve(page: Path) -> None:
    assert broken_links(page) == []


def test_link_checker_finds_a_broken_anchor_and_file(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "other.md").write_text("# Other page\n\n## `tfcnn train`: the run\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n[ok](other.md#tfcnn-train-the-run) [self](#page)\n"
                    "[bad anchor](other.md#accuracy) [bad file](missing.md)\n"
                    "`[in code](missing.md)`\n\n```\n[fenced](missing.md)\n```\n")
    assert broken_links(page, root=tmp_path) == [
        "page.md:4: other.md#accuracy: no heading with anchor #accuracy in other.md",
        "page.md:4: missing.md: no such file"]


def test_slugify_agrees_with_the_site() -> None:
    """The site's anchors (Python-Markdown's toc with mkdocs.yml's slugify) equal ours for
    every heading of README.md and docs/*.md, so one link works on GitHub and in the site."""
    import markdown
    from pymdownx.slugs import slugify as pymdownx_slugify

    site_slug = pymdownx_slugify(case="lower")
    for page in PAGES:
        for heading in headings(page):
            html = markdown.markdown(f"# {heading}", extensions=["toc"],
                                     extension_configs={"toc": {"slugify": site_slug}})
            site_id = re.search(r'id="([^"]*)"', html).group(1)
            assert site_id == slugify(heading), f"{page.name}: {heading!r}"
    assert slugify("Accuracy: `--preset best`, TTA and ensembles") == \
        "accuracy---preset-best-tta-and-ensembles"


def test_every_page_is_in_the_nav() -> None:
    """mkdocs build --strict fails on a page left out of the nav; say which here."""
    nav = set(re.findall(r"^\s*-\s*(?:[^:\n]+:\s*)?([\w/.-]+\.md)\s*$",
                         (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), re.M))
    assert sorted(p.name for p in DOCS.glob("*.md")) == sorted(nav)


def test_cli_reference_is_up_to_date() -> None:
    """docs/cli.md is what docs/gen_cli.py writes from the parser the command runs now
    (a flag added without `python docs/gen_cli.py` fails here)."""
    from tfcnn.cli_parser import build_parser

    gen_cli = _load(DOCS / "gen_cli.py")
    expected = gen_cli.render(build_parser())
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == expected, \
        "docs/cli.md is stale: run python docs/gen_cli.py"


def test_cli_reference_lists_every_command_and_flag() -> None:
    from tfcnn.cli_parser import build_parser

    gen_cli = _load(DOCS / "gen_cli.py")
    parser = build_parser()
    text = gen_cli.render(parser)
    for name, sub in gen_cli._subcommands(parser).items():
        assert f"## `tfcnn {name}`" in text
        for action in sub._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}`" in text, f"tfcnn {name} {option}"


def output_blocks(path: Path) -> list[tuple[str, str]]:
    """(name, content) of each generated block of a page; a marker out of place fails."""
    blocks, name, body = [], None, []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        opened = OPEN_MARK.match(line.strip())
        if opened:
            assert name is None, f"{path.name}:{number}: block {name} not closed"
            name, body = opened.group(1), []
        elif line.strip() == CLOSE_MARK:
            assert name is not None, f"{path.name}:{number}: a close without an open"
            blocks.append((name, "\n".join(body)))
            name = None
        elif "<!-- output" in line or "<!-- /output" in line:
            pytest.fail(f"{path.name}:{number}: malformed marker {line.strip()!r}")
        elif name is not None:
            body.append(line)
    assert name is None, f"{path.name}: block {name} not closed"
    return blocks


def test_generated_blocks_are_well_formed_and_known() -> None:
    gen_outputs = _load(DOCS / "gen_outputs.py")
    expected = {(job.page, job.name) for job in gen_outputs.JOBS}
    found = set()
    for page in PAGES:
        names = [name for name, _ in output_blocks(page)]
        assert len(names) == len(set(names)), f"{page.name}: a block name twice"
        for name, body in output_blocks(page):
            found.add((str(page.relative_to(ROOT)), name))
            assert "Recorded by `docs/gen_outputs.py`" in body, f"{page.name}: {name}"
            assert body.count("```") % 2 == 0 and "```" in body, f"{page.name}: {name}"
    assert found == expected


def test_block_writer_replaces_only_its_block(tmp_path: Path) -> None:
    gen_outputs = _load(DOCS / "gen_outputs.py")
    page = tmp_path / "page.md"
    page.write_text("intro\n<!-- output: a -->\nold a\n<!-- /output -->\nmiddle\n"
                    "<!-- output: b -->\nold b\n<!-- /output -->\nend\n")
    gen_outputs.write_block(page, "a", "new a\nline 2")
    assert page.read_text() == ("intro\n<!-- output: a -->\nnew a\nline 2\n<!-- /output -->\n"
                                "middle\n<!-- output: b -->\nold b\n<!-- /output -->\nend\n")
    with pytest.raises(SystemExit, match="no block 'c'"):
        gen_outputs.write_block(page, "c", "x")


MAIN_JOB = ("python3 -m venv .venv && . .venv/bin/activate && pip install -e . && "
            "tfcnn train --data-dir ../shared/datasets")
TEST_JOB = ('python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && '
            "python -m pytest")


def test_readme_is_short_and_has_the_two_setup_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 350, "README.md: move reference material to docs/"
    commands = [line.strip() for line in text.splitlines()]
    assert MAIN_JOB in commands and TEST_JOB in commands


def test_ci_runs_the_readme_test_command_and_builds_the_site() -> None:
    """.ci/run installs the test extra and runs the README's test command, and builds
    the site with warnings as errors."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert 'python -m pip install --quiet -e ".[test]"' in [line.strip() for line in ci]
    assert ci[-1].strip() == "python -m pytest"
    assert any("mkdocs build --strict" in line and not line.lstrip().startswith("#")
               for line in ci)



def _ignored(paths: list[str]) -> set[str]:
    """The paths .gitignore ignores (git check-ignore, tracked or not)."""
    done = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=ROOT,
                          input="\n".join(paths), capture_output=True, text=True)
    assert done.returncode in (0, 1), done.stderr  # 1: none ignored
    return set(done.stdout.split())


def test_gitignore_drops_what_the_examples_write_and_keeps_the_sources() -> None:
    written = ["digits.tflite", "digits.tflite.labels.txt", "export/model.tflite",
               "export/saved_model/saved_model.pb", "myphotos/bag/bag-0000.jpg", "seven.png",
               "seven.json", "runs/mnist/model.keras"]
    sources = sorted(str(p.relative_to(ROOT)) for folder in ("src", "tests", "docs")
                     for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)
    assert any(s.startswith("src/tfcnn/export/") for s in sources)
    assert _ignored(written) == set(written)
    assert _ignored(sources) == set()
