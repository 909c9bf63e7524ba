"""Every relative link in README.md and docs/*.md points at a file that exists (and, for a
`#fragment` into a Markdown file, at one of its headings), so moving a doc never strands a link."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) outside code; images too. Targets with a scheme (http:, mailto:) are not ours.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+\s+(.*)$", FENCE.sub("", markdown), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def links(doc: Path) -> list[str]:
    text = INLINE_CODE.sub("", FENCE.sub("", doc.read_text()))
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    broken = []
    for target in links(doc):
        path, _, fragment = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file.read_text()):
            broken.append(f"{target} (no heading #{fragment})")
    assert not broken, f"{doc.relative_to(ROOT)}: broken links: {', '.join(broken)}"


def test_the_link_check_sees_links():
    """The check would pass vacuously if the pattern matched nothing."""
    assert "docs/statistics.md" in links(ROOT / "README.md")


def architecture_map() -> set[str]:
    """The modules docs/architecture.md's tables name, as paths from the repository root.

    A section's heading names its package (`study/`); a row's first cell names modules of it
    (`a.py`, `b.py`) or a subpackage (`figures/`), whose modules that row's text names."""
    named: set[str] = set()
    package = None
    for line in FENCE.sub("", (ROOT / "docs" / "architecture.md").read_text()).splitlines():
        heading = re.match(r"^#+ `([\w/]+/)`", line)
        if line.startswith("#"):
            package = heading.group(1) if heading else None
        elif package and line.startswith("| `"):
            first, rest = line.split("|")[1], "|".join(line.split("|")[2:])
            for name in re.findall(r"`([\w./]+)`", first):
                if name.endswith("/"):
                    named.add(package + name)
                    named.update(package + name + m for m in re.findall(r"`(\w+\.py)`", rest))
                else:
                    named.add(package + name)
    return named


def test_architecture_map_names_every_module_and_only_modules_that_exist():
    named = architecture_map()
    assert "analysis/stats/paired.py" in named and "study/cifar/train.py" in named
    missing = sorted(p for p in named if not (ROOT / p).exists())
    modules = {str(p.relative_to(ROOT)) for pkg in ("study", "analysis")
               for p in (ROOT / pkg).rglob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    unmapped = sorted(modules - named)
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"
    assert not unmapped, f"modules missing from docs/architecture.md's map: {unmapped}"
