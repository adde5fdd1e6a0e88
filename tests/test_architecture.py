"""The layer rule of docs/architecture.md, checked on the source: every ``import`` (module level or
inside a function) goes to the same layer or a lower one, modules import each other without cycles,
no module imports another module's private (``_name``) names, and benchmarks use the library's
public modules only (never the CLI's internals).

    errors, fileio → data → models → training → adapt → attribution, embedding, faces → api, predict, evaluate → cli, serve
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "emoadapt"

#: Layer of each top-level module or package of ``emoadapt`` (lower numbers are lower layers).
LAYERS = {
    "errors": 0, "fileio": 0, "provenance": 0,
    "data": 1,
    "models": 2,
    "training": 3,
    "adapt": 4,
    "attribution": 5, "embedding": 5, "faces": 5,
    "api": 6, "predictor": 6, "results": 6, "explaining": 6, "predict": 6, "evaluate": 6, "report": 6, "calibrate": 6, "quantize": 6, "recipe": 6, "pipeline": 6, "shards": 6, "video": 6,
    "cli": 7, "serve": 7, "__main__": 7,
}

#: Imports allowed in spite of the rules, each with its reason. Keep it short.
ALLOWED_PRIVATE: set[tuple[str, str, str]] = set()  # (module, imported module, name) with a reason; none now

#: Upward imports allowed in spite of the layer rule, each with its reason.
ALLOWED_UPWARD: set[tuple[str, str]] = set()  # (module, upper module) edges allowed with a reason; none now


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else max(LAYERS.values())


def imports(path: Path, name: str, known: dict[str, Path]) -> list[tuple[str, str | None, int]]:
    """(imported emoadapt module, imported name or None, line) for every import in ``path``."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names if alias.name.startswith("emoadapt")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("emoadapt"):
                continue
            for alias in node.names:  # ``from pkg import module`` names a module; else a name in target
                sub = f"{target}.{alias.name}"
                found.append((sub, None, node.lineno) if sub in known else (target, alias.name, node.lineno))
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {target for target, _, _ in imports(path, name, known) if target in known and target != name}
            for name, path in known.items()}


def test_every_module_has_a_layer():
    assert [m for m in modules() if m != "emoadapt" and m.split(".")[1] not in LAYERS] == []


def test_no_module_imports_a_higher_layer():
    known = modules()
    upward = [f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)}), line {line}"
              for name, path in known.items() for target, _, line in imports(path, name, known)
              if target in known and layer(target) > layer(name) and (name, target) not in ALLOWED_UPWARD]
    assert upward == []


def test_no_import_cycles_between_modules():
    edges = graph()
    for name, target in ALLOWED_UPWARD:
        edges[name].discard(target)
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in edges[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    # a package's __init__ re-exporting its own modules is not a cycle in the design
    cycles = [c for c in cycles if not all(m == c[0] or m.startswith(c[0] + ".") for m in c)]
    assert cycles == []


def test_no_private_names_are_imported_across_modules():
    known = modules()
    private = [(name, target, imported) for name, path in known.items()
               for target, imported, _ in imports(path, name, known)
               if imported and imported.startswith("_") and target != name]
    assert [p for p in private if p not in ALLOWED_PRIVATE] == []


def test_private_modules_are_used_inside_their_package_only():
    known = modules()
    leaks = [f"{name} imports {target}" for name, path in known.items() for target, _, _ in imports(path, name, known)
             if any(part.startswith("_") and not part.startswith("__") for part in target.split("."))
             and not name.startswith(target.rsplit(".", 1)[0] + ".") and name != target.rsplit(".", 1)[0]]
    assert leaks == []


def test_benchmarks_use_public_library_modules_only():
    bad = []
    for path in sorted((ROOT / "benchmarks").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("emoadapt"):
                parts = node.module.split(".")
                if "cli" in parts or any(p.startswith("_") for p in parts) or \
                        any(alias.name.startswith("_") for alias in node.names):
                    bad.append(f"{path.name}:{node.lineno} from {node.module} import "
                               f"{', '.join(a.name for a in node.names)}")
    assert bad == []


def test_the_product_never_imports_the_research_code():
    """Research that trained no shipped model (distillation) lives in benchmarks/research/ only."""
    research = {p.stem for p in (ROOT / "benchmarks" / "research").glob("*.py") if p.stem != "__init__"}
    assert {"bank", "distill", "hints"} <= research
    assert not [name for name in modules() if name.split(".")[-1] in {"bank", "distill", "hints"}]
    bad = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{name} imports {t}" for t in targets if t.split(".")[0] in ("research", "benchmarks")]
    assert bad == []


#: functions allowed to be long or to take many parameters, each with its reason. Keep it short.
LONG_ALLOWED = {
    "emoadapt.serve.app.create_app": "one keyword per `emoadapt serve` option, and the routes as closures over them",
    "emoadapt.serve.limits.__init__": "Service: one keyword per limit of the web service (upload, pixels, lanes, timeouts)",
    "emoadapt.training.loop.fit": "arrays of both splits besides the plan; the keywords are run control",
}


def test_no_function_of_the_product_is_long_or_takes_many_parameters():
    """Short functions a newcomer can follow: none over 90 lines or 14 parameters (``run_epochs``
    once took 21 and ran 129 lines; it now takes an EpochPlan, the RunFiles and two callbacks)."""
    too_long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                count = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs)
                lines = node.end_lineno - node.lineno + 1
                where = f"{name}.{node.name}"
                if (lines > 90 or count > 14) and where not in LONG_ALLOWED:
                    too_long.append(f"{name}.{node.name}: {lines} lines, {count} parameters")
    assert too_long == []


def test_every_module_of_the_product_is_reached_from_a_user_entry_point():
    """No dead modules (issue #31): every module is imported, directly or not, from what users call
    — the CLI (``emoadapt …``, ``python -m emoadapt``) and the public API of ``emoadapt/__init__.py``
    — counting the names a package's ``__init__`` loads lazily by string (its submodules' names)."""
    known, edges = modules(), graph()
    for name, path in known.items():
        if path.name == "__init__.py":  # lazy maps such as {"DnCShap": "dncshap"} name submodules by string
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and f"{name}.{node.value}" in known:
                    edges[name].add(f"{name}.{node.value}")
    todo, seen = ["emoadapt", "emoadapt.cli", "emoadapt.cli.__main__", "emoadapt.__main__"], set()
    while todo:
        module = todo.pop()
        if module in seen or module not in known:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))] + sorted(edges[module])
    assert sorted(set(known) - seen) == []
