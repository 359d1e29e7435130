"""The docs agree with the code: every code reference in the walkthroughs
names something that exists, the English and Korean walkthroughs name the
same things, and every relative link in README.md and docs/ leads to a file.

A code reference is an inline code span in the prose of one of three forms:

    `minivae.vae.VAE.elbo`                      a module, then attributes
    `minivae/distributions.py::gaussian_kl`     a file, then a name defined in it
    `tests/test_gradients.py`                   a file of the repository

Fenced code blocks are examples, not references; the Python ones are run.
"""
import ast
import importlib
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
WALKTHROUGHS = {"en": ROOT / "docs" / "walkthrough.md",
                "ko": ROOT / "docs" / "walkthrough.ko.md"}

TOP = r"(?:minivae|tests|docs|benchmarks|examples)"
DOTTED = re.compile(r"minivae(?:\.[A-Za-z_]\w*)+")
PATH_NAME = re.compile(rf"({TOP}/[\w./-]*\.py)::([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")
FILE = re.compile(rf"{TOP}/[\w./-]*\.\w+")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def split_fences(text):
    """(prose, blocks): the text outside fenced code blocks, and each block
    as (info string, code)."""
    prose, blocks, fence, info, code = [], [], None, "", []
    for line in text.splitlines():
        marker = re.match(r"^ {0,3}(`{3,}|~{3,})(.*)$", line)
        if fence is None and marker:
            fence, info, code = marker.group(1), marker.group(2).strip(), []
        elif fence is not None and marker and marker.group(1).startswith(fence) \
                and not marker.group(2).strip():
            blocks.append((info, "\n".join(code) + "\n"))
            fence = None
        elif fence is not None:
            code.append(line)
        else:
            prose.append(line)
    assert fence is None, "a fenced code block is never closed"
    return "\n".join(prose), blocks


def references(path):
    """The code references in the prose of a markdown file, as a set of strings."""
    prose, _ = split_fences(path.read_text(encoding="utf-8"))
    spans = {span.strip() for span in CODE_SPAN.findall(prose)}
    return {s for s in spans
            if DOTTED.fullmatch(s) or PATH_NAME.fullmatch(s) or FILE.fullmatch(s)}


def import_longest_module(parts):
    """(module, the remaining attribute names) for the longest prefix of
    `parts` that is an importable module."""
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        try:
            return importlib.import_module(name), parts[i:]
        except ModuleNotFoundError as err:
            # only "this name is not a module" moves on; a module that fails
            # to import for another reason is an error of its own
            if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
                raise
    raise LookupError(f"no module named {parts[0]!r}")


def get_attributes(module, names, ref):
    obj = module
    for i, name in enumerate(names):
        if not hasattr(obj, name):
            owner = ".".join([module.__name__, *names[:i]])
            raise LookupError(f"{ref}: {owner} has no attribute {name!r}")
        obj = getattr(obj, name)
    return obj


def module_name(path):
    """minivae/vae.py -> minivae.vae; minivae/__init__.py -> minivae."""
    parts = list(Path(path).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def defined_in_source(path, dotted):
    """Whether the file at `path` defines `dotted` (e.g. 'Class.method') at
    its top level, read without importing the file."""
    body = ast.parse((ROOT / path).read_text(encoding="utf-8")).body
    for name in dotted.split("."):
        found = [n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                   ast.ClassDef)) and n.name == name]
        found += [n for n in body if isinstance(n, ast.Assign)
                  and any(isinstance(t, ast.Name) and t.id == name for t in n.targets)]
        if not found:
            return False
        body = getattr(found[0], "body", [])
    return True


def resolve(ref):
    """Check that `ref` names a real object; raise LookupError saying why not."""
    match = PATH_NAME.fullmatch(ref)
    if match:
        path, dotted = match.groups()
        if not (ROOT / path).is_file():
            raise LookupError(f"{ref}: there is no file {path}")
        if path.startswith("minivae/"):
            module = importlib.import_module(module_name(path))
            get_attributes(module, dotted.split("."), ref)
        elif not defined_in_source(path, dotted):
            raise LookupError(f"{ref}: {path} defines no {dotted}")
        return
    module, names = import_longest_module(ref.split("."))
    if not Path(module.__file__).resolve().is_relative_to(ROOT):
        raise LookupError(f"{ref}: imported {module.__name__} from {module.__file__}, "
                          f"not from this repository; run with PYTHONPATH={ROOT}")
    get_attributes(module, names, ref)


def named_file(ref):
    """The repository file a reference names (for a dotted name, its module's
    file, found from the name alone), or None for a module that has none."""
    match = PATH_NAME.fullmatch(ref)
    if match:
        return match.group(1)
    if FILE.fullmatch(ref):
        return ref
    parts = ref.split(".")
    for i in range(len(parts), 0, -1):
        stem = "/".join(parts[:i])
        for candidate in (f"{stem}.py", f"{stem}/__init__.py"):
            if (ROOT / candidate).is_file():
                return candidate
    return None


def relative_links(path):
    """The link targets in a markdown file that point into the repository."""
    prose, _ = split_fences(path.read_text(encoding="utf-8"))
    prose = CODE_SPAN.sub("", prose)
    targets = INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)
    return [t for t in targets if not SCHEME.match(t) and not t.startswith(("#", "//"))]


def link_target(source, target):
    """The file a relative link in `source` leads to (fragment and query removed)."""
    target = unquote(re.split(r"[#?]", target, maxsplit=1)[0])
    return ROOT / target.lstrip("/") if target.startswith("/") else source.parent / target


def markdown_files():
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


# ---------------------------------------------------------------- tests

def test_the_walkthroughs_name_the_same_nonempty_set_of_code_references():
    refs = {language: references(path) for language, path in WALKTHROUGHS.items()}
    assert refs["en"], "the English walkthrough names no code at all"
    only_en, only_ko = sorted(refs["en"] - refs["ko"]), sorted(refs["ko"] - refs["en"])
    assert not only_en and not only_ko, (
        f"the walkthroughs are out of step: only in walkthrough.md: {only_en}; "
        f"only in walkthrough.ko.md: {only_ko}")


@pytest.mark.parametrize("language", sorted(WALKTHROUGHS))
def test_every_code_reference_in_a_walkthrough_names_a_real_object(language):
    refs = sorted(r for r in references(WALKTHROUGHS[language]) if not FILE.fullmatch(r))
    assert refs, f"{WALKTHROUGHS[language].name} names no minivae object"
    failures = []
    for ref in refs:
        try:
            resolve(ref)
        except LookupError as err:
            failures.append(str(err))
    assert not failures, (f"{WALKTHROUGHS[language].name}: references to nothing:\n  "
                          + "\n  ".join(failures))


@pytest.mark.parametrize("language", sorted(WALKTHROUGHS))
def test_every_file_named_in_a_code_reference_exists(language):
    refs = references(WALKTHROUGHS[language])
    files = {ref: named_file(ref) for ref in refs}
    missing = sorted(f"{ref} -> {path or 'no file for this name'}"
                     for ref, path in files.items() if path is None or not (ROOT / path).is_file())
    assert any(FILE.fullmatch(ref) for ref in refs), "no reference names a file"
    assert not missing, f"{WALKTHROUGHS[language].name}: missing files:\n  " + "\n  ".join(missing)


def test_every_relative_link_in_the_readme_and_docs_points_to_an_existing_file():
    checked, broken = 0, []
    for source in markdown_files():
        for target in relative_links(source):
            checked += 1
            if not link_target(source, target).exists():
                broken.append(f"{source.relative_to(ROOT)}: ({target})")
    assert checked, "found no relative links at all; the link pattern is broken"
    assert not broken, "links to files that do not exist:\n  " + "\n  ".join(broken)


def test_each_walkthrough_links_to_the_other_language():
    for source, other in [(WALKTHROUGHS["en"], WALKTHROUGHS["ko"]),
                          (WALKTHROUGHS["ko"], WALKTHROUGHS["en"])]:
        targets = {link_target(source, t).resolve() for t in relative_links(source)}
        assert other.resolve() in targets, f"{source.name} does not link to {other.name}"


@pytest.mark.parametrize("language", sorted(WALKTHROUGHS))
def test_every_python_example_in_a_walkthrough_runs(language, capsys):
    _, blocks = split_fences(WALKTHROUGHS[language].read_text(encoding="utf-8"))
    examples = [code for info, code in blocks if info == "python"]
    assert examples, f"{WALKTHROUGHS[language].name} has no Python example"
    for i, code in enumerate(examples, 1):
        exec(compile(code, f"{WALKTHROUGHS[language].name}, example {i}", "exec"),
             {"__name__": "__walkthrough__"})


def test_the_readme_states_the_hypothesis_profiles_as_they_are_registered():
    from hypothesis import settings
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    dev, ci = settings.get_profile("dev"), settings.get_profile("ci")
    assert f"`dev`, the default outside CI ({dev.max_examples} random examples" in readme
    assert f"`ci`, which CI selects by setting `CI=true` ({ci.max_examples} examples, " \
           f"derandomized" in readme and ci.derandomize and not dev.derandomize
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    assert '"ci" if os.environ.get("CI") else "dev"' in conftest   # the default the README states
