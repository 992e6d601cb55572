"""Every third-party module the end-to-end tests import is pinned in requirements.txt, so a fresh
machine's virtual environment has it (a module that happens to be installed by hand here would
otherwise hide a missing line, as `httpx` once did)."""

import ast
import pathlib
import re
import sys

HERE = pathlib.Path(__file__).resolve().parent
# Import name → distribution name, where they differ.
DISTRIBUTION = {"yaml": "PyYAML"}


def imported_modules():
    local = {p.stem for p in HERE.glob("*.py")}
    found = {}
    for path in sorted(HERE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local and top != "__future__":
                    found.setdefault(top, path.name)
    return found


def pinned():
    out = {}
    for line in (HERE / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
            assert m, f"not pinned with ==: {line!r}"
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_every_imported_module_is_pinned():
    pins = pinned()
    modules = imported_modules()
    assert {"openai", "anthropic", "boto3", "httpx", "pytest", "yaml"} <= set(modules), modules
    missing = {
        mod: where
        for mod, where in modules.items()
        if DISTRIBUTION.get(mod, mod).lower().replace("_", "-") not in pins
    }
    assert not missing, f"imported but not in requirements.txt: {missing}"
