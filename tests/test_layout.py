"""The house rules of issue 21, checked on the source: the import graph has no cycles (lazy imports
counted), a lazy import of our own modules says why, a module over 500 lines says why at its top,
README's map names modules that exist, and scripts/ holds only what an installer runs."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EDGE = ROOT / "edge"


def _modules() -> dict[str, Path]:
    mods = {}
    for p in sorted(EDGE.rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


MODS = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODS:
        name = name.rpartition(".")[0]
    return name or None


def _imports(mod: str, path: Path) -> list[tuple[str, bool, int]]:
    """(target module, at module level, line) for each import of one of our modules."""
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    found: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for ch in ast.iter_child_nodes(node):
            if isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(ch, False)
                continue
            if isinstance(ch, ast.If) and "TYPE_CHECKING" in ast.unparse(ch.test):
                continue   # for the type checker only: never runs
            names: list[str] = []
            if isinstance(ch, ast.Import):
                names = [a.name for a in ch.names]
            elif isinstance(ch, ast.ImportFrom):
                base = ch.module or ""
                if ch.level:
                    parts = pkg.split(".")
                    parts = parts[: len(parts) - (ch.level - 1)]
                    base = ".".join(parts + ([ch.module] if ch.module else []))
                names = [f"{base}.{a.name}" for a in ch.names]
            for n in names:
                t = _resolve(n)
                if t and t != mod and not mod.startswith(t + "."):
                    found.append((t, top, ch.lineno))
            visit(ch, top)

    visit(ast.parse(path.read_text(encoding="utf-8")), True)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODS.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def test_no_import_cycle_even_through_lazy_imports():
    graph = {m: {t for t, _, _ in imps} for m, imps in GRAPH.items()}
    assert _cycles(graph) == []


def test_a_lazy_import_of_our_own_modules_says_why():
    unexplained = []
    for mod, imps in GRAPH.items():
        text = MODS[mod].read_text(encoding="utf-8")
        if "lazily" in (ast.get_docstring(ast.parse(text)) or ""):
            continue   # the module says at its top why its imports wait (edge/cli.py)
        lines = text.splitlines()
        for target, top, line in imps:
            if top:
                continue
            here, above = lines[line - 1], lines[line - 2] if line > 1 else ""
            if "lazy" not in here and "lazy" not in above:
                unexplained.append(f"{MODS[mod].relative_to(ROOT)}:{line} imports {target}")
    assert unexplained == []


def test_a_module_over_500_lines_says_why_at_its_top():
    long = []
    for mod, path in MODS.items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 500:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if not re.search(r"(about|over) \d+ lines", doc):
                long.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert long == []


def test_readmes_map_names_modules_that_exist():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(edge/[\w/]+(?:\.py)?/?)`", text))
    assert len(named) >= 7   # camera, detect, liveness, embed, match, decide, door at least
    missing = [n for n in sorted(named) if not (ROOT / n).exists()]
    assert missing == []


def test_scripts_holds_only_what_an_installer_runs():
    product = {"setup.sh", "install.sh", "firstboot", "build-image.sh", "test-image.sh",
               "maskgate-admin", "maskgate-usb"}
    assert {p.name for p in (ROOT / "scripts").iterdir()} <= product
