"""The import structure: each library package imports only the packages below it, and no
module comes back to itself through its imports (no circles).

    nn                                  the layer library
    training            -> nn           the method interface (Method, StepPlan, DrawnAhead)
    ifm                 -> nn           the IFM regularizer
    ice                 -> nn, training iCE fi-RevNet, and it as a training method
    data                                shiftedMNIST (imports none of the others)
    experiment          -> all above    the harness: settings, the loop, run folders, and
                                        baseline and IFM as training methods

Every import counts, those inside functions too. Command modules (a ``main`` run by
``python -m``) sit above the libraries wherever their file lies: data/figure.py imports
experiment/cli.py's closed-pipe wrapper.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BELOW = {"nn": set(), "data": set(), "training": {"nn"}, "ifm": {"nn"},
         "ice": {"nn", "training"}, "experiment": {"nn", "training", "ifm", "ice", "data"}}
COMMANDS = {"data.figure"}


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def library_modules():
    """{module name: path} of every module of the library packages."""
    return {module_name(p): p for package in BELOW for p in (ROOT / package).rglob("*.py")}


def imports(name, path, modules):
    """The library modules ``name`` imports (a submodule where one is named, else its
    package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph():
    modules = library_modules()
    return {name: imports(name, path, modules) for name, path in modules.items()}


def test_packages_import_only_the_packages_below_them():
    upward = [f"{m} -> {t}" for m, targets in graph().items() if m not in COMMANDS
              for t in targets
              if t.split(".")[0] not in BELOW[m.split(".")[0]] | {m.split(".")[0]}]
    assert not upward


def test_no_module_imports_itself_back():
    edges = graph()
    state, circles = {}, []

    def visit(module, path):
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not circles
