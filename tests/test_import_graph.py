"""The data flow is the import graph: no module imports from further down the flow."""

import ast
from pathlib import Path

import sae_eeg

PACKAGE = Path(sae_eeg.__file__).parent

# Position of each top-level module/subpackage along the flow (DESIGN.md). A module
# may import only from strictly lower ranks (and from inside its own subpackage).
RANK = {
    "errors": 0, "_docs": 0, "_check": 1, "_io": 2, "_config": 2,
    "manifests": 3, "audio": 3, "speech": 4, "backbones": 5, "sae": 6,
    "trajectories": 7, "eeg": 8, "stats": 9, "alignment": 10, "evals": 10,
    "viz": 11, "browse": 11.5, "pipeline": 12, "demo": 12, "cli": 13,  # browse: after viz, before the pipeline
}
# The TRF engine lifts out whole: it imports nothing of ours.
ISOLATED = {"trf"}


def _top(module_path):
    rel = module_path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imported_tops(tree, file):
    """Top-level sae_eeg names imported anywhere in ``tree`` (functions included)."""
    pkg_parts = file.relative_to(PACKAGE).parent.parts
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "sae_eeg" and len(parts) > 1:
                    yield parts[1]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] != "sae_eeg":
                    continue
                rest = parts[1:]
            else:
                base = list(pkg_parts[: len(pkg_parts) - (node.level - 1)])
                rest = base + (node.module.split(".") if node.module else [])
            if rest:
                yield rest[0]
            else:  # `from . import x` at the package root: a module, or a name of __init__
                for alias in node.names:
                    is_module = (PACKAGE / alias.name).is_dir() or (PACKAGE / f"{alias.name}.py").is_file()
                    yield alias.name if is_module else "__init__"


def test_no_upward_imports():
    problems = []
    for file in sorted(PACKAGE.rglob("*.py")):
        top = _top(file)
        if top == "__init__":
            continue
        tree = ast.parse(file.read_text(), filename=str(file))
        for imported in set(_imported_tops(tree, file)):
            if imported == top or imported == "__init__":
                continue
            if top in ISOLATED:
                problems.append(f"{file.relative_to(PACKAGE)} imports sae_eeg.{imported}; trf/ must stand alone")
                continue
            if imported in ISOLATED:
                continue  # anyone may use the TRF engine downstream of it
            if top not in RANK or imported not in RANK:
                problems.append(f"{file.relative_to(PACKAGE)}: add {top!r}/{imported!r} to RANK")
            elif RANK[imported] >= RANK[top]:
                problems.append(f"{file.relative_to(PACKAGE)} imports sae_eeg.{imported} (upstream import only)")
    assert not problems, "\n".join(problems)
