"""Docs that are generated or enumerate code stay in step with it."""

import inspect
import re
from pathlib import Path

from mmgen.plugin import hookspecs
from mmgen.recipe.reference import reference_markdown

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_recipe_reference_is_up_to_date():
    committed = (DOCS / "recipe-reference.md").read_text()
    assert committed == reference_markdown(), "run: python -m mmgen.recipe.reference > docs/recipe-reference.md"


def test_every_hook_has_a_section_in_plugin_hooks():
    hooks = {n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("register_")}
    headings = set(re.findall(r"^## (\w+)$", (DOCS / "plugin-hooks.md").read_text(), re.MULTILINE))
    assert hooks, "no hooks found: the test would pass vacuously"
    assert hooks == headings


def test_every_source_path_the_docs_name_exists():
    root = DOCS.parent
    texts = {p: p.read_text() for p in [*DOCS.glob("*.md"), root / "README.md"]}
    pattern = r"`((?:mmgen|plugins|benchmarks|tests|recipes)/[\w/.-]+\.(?:py|toml))`"
    named = {(p.name, m) for p, text in texts.items() for m in re.findall(pattern, text)}
    assert named, "the pattern found nothing: the test would pass vacuously"
    missing = sorted((doc, path) for doc, path in named if not (root / path).is_file())
    assert not missing, f"docs name files that do not exist: {missing}"


def test_ci_runs_the_readmes_install_and_test_commands():
    readme, ci = (DOCS.parent / "README.md").read_text(), (DOCS.parent / ".ci" / "run").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.DOTALL)
    install, tests = blocks[1].strip(), blocks[2].strip()  # after the data root's block
    main_job = " && mmgen train recipes/mnist_quick.toml --out runs/quick && mmgen eval runs/quick --fast"
    assert install.endswith(main_job) and "python3 -m venv" in install
    assert install.removesuffix(main_job) in ci.splitlines()
    assert tests in ci.splitlines() and "pytest" in tests


def test_the_readmes_npy_file_names_are_what_sample_writes():
    from mmgen.cli.sample import output_paths

    line = next(ln for ln in (DOCS.parent / "README.md").read_text().splitlines() if "--out samples.npy" in ln)
    named = re.findall(r"samples[\w.]*\.npy", line.split("#", 1)[1])
    written = [p.name for p in output_paths(Path("samples.npy"), ["image", "label"]).values()]
    assert named == written
