"""The documentation points at things that exist: every relative link (and its #anchor) in README.md, CHANGELOG.md
and docs/*.md resolves, every rlkit/...py, params/...yaml and tests/... path they mention is in the tree, the
README stays short, and the README's test command is the one CI ends up calling."""
import re
import shlex

import pytest

from conftest import ROOT

PAGES = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
PATH = re.compile(r"(?<![\w./-])((?:rlkit|params|tests)/[\w./-]*)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def page_id(page):
    return str(page.relative_to(ROOT))


def anchors(page) -> set:
    """The #fragments a code host gives the page's headings: lower case, punctuation dropped, spaces as hyphens,
    a repeated heading numbered -1, -2, ..."""
    seen, out = {}, set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_resolve(page):
    text = FENCE.sub("", page.read_text())  # links inside code blocks are examples, not links
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            broken.append(f"{target} (no heading #{fragment})")
    assert not broken, f"{page_id(page)}: broken links: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_mentioned_paths_exist(page):
    missing = []
    for raw in PATH.findall(page.read_text()):
        path = raw.split("::")[0].rstrip(".,")
        if path.startswith("rlkit/") and not path.endswith((".py", "/")):
            continue  # a module's dotted name or a folder mentioned in passing, e.g. rlkit/__pycache__
        if path.startswith("params/") and not path.endswith(".yaml"):
            continue
        if not (ROOT / path).exists():
            missing.append(raw)
    assert not missing, f"{page_id(page)} mentions paths that are not in the tree: {missing}"


def test_the_readme_is_read_in_five_minutes():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/ (at most 250)"


def test_every_params_file_has_a_row_in_the_readme_presets():
    """The README's presets table is where a reader looks for what a params file reaches; a preset added
    without a row (or a row naming a file that is gone) is caught here. A row may name a file and its `_rnd`
    twin as "`name.yaml`, `_rnd`"."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Presets", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    named = set()
    for row in rows:
        first = row.split("|")[1]
        files = re.findall(r"`([\w.]+\.yaml)`", first)
        named.update(files)
        if "`_rnd`" in first:
            named.update(f.replace(".yaml", "_rnd.yaml") for f in files)
    on_disk = {p.name for p in (ROOT / "params").glob("*.yaml")}
    assert not on_disk - named, f"params files without a row in README.md's presets: {sorted(on_disk - named)}"
    assert not named - on_disk, f"README.md's presets name files not in params/: {sorted(named - on_disk)}"


def make_recipe(target: str) -> list:
    """The commands of a Makefile target, variables expanded from the Makefile's own assignments."""
    text = (ROOT / "Makefile").read_text()
    variables = dict(re.findall(r"^(\w+)\s*\??=\s*(.*?)\s*$", text, re.M))
    recipe = re.search(rf"^{target}:.*\n((?:\t.*\n?)*)", text, re.M).group(1)

    def expand(line):
        while (m := re.search(r"\$\((\w+)\)", line)) and m.group(1) in variables:
            line = line.replace(m.group(0), variables[m.group(1)])
        return line
    return [expand(line.strip()) for line in recipe.splitlines() if line.strip()]


def test_the_readme_test_command_is_what_ci_calls():
    readme = (ROOT / "README.md").read_text()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert ci[-1] == "make test", f".ci/run ends with {ci[-1]!r}, not the README's `make test`"
    assert re.search(r"^make test\b", readme, re.M), "the README's two commands must include `make test`"
    # make test runs pytest over the whole suite: no path, no -m filter, and the suite's root is tests/
    pytest_line = next(line for line in make_recipe("test") if "-m pytest" in line)
    args = shlex.split(pytest_line)
    assert args[:3] == [".venv/bin/python", "-m", "pytest"] and all(a.startswith("-") and a != "-m" for a in args[3:]), \
        pytest_line
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^testpaths = \["tests"\]', pyproject, re.M)
    # the fast subset the README gives runs with the same interpreter, over a folder that exists
    assert ".venv/bin/python -m pytest tests/unit" in readme and (ROOT / "tests" / "unit").is_dir()
