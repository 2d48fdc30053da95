"""The architecture's rules, checked on the source: modules small enough to read, no reach
into another module's private names, a symbolic side without torch, a CLI without logic,
and citations only of documents the repository holds."""

import ast
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gradlab"
MODULES = sorted(PACKAGE.rglob("*.py"))
LIMIT = 400


def imports(path):
    """(module imported from, names) for every `from ... import ...` in a file, resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            yield module, [a.name for a in node.names], node
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], node


def test_no_module_is_over_the_limit():
    """The package's modules and the tests' alike: each small enough to read at once."""
    files = MODULES + sorted((ROOT / "tests").glob("*.py"))
    long = {str(p.relative_to(ROOT)): n for p in files
            if (n := len(p.read_text().splitlines())) > LIMIT}
    assert not long, f"modules over {LIMIT} lines: {long}"


def test_no_private_name_is_imported_across_modules():
    reaches = []
    for path in MODULES:
        for module, names, node in imports(path):
            if module.startswith("gradlab"):
                reaches += [f"{path.relative_to(ROOT)}:{node.lineno} {module}.{n}"
                            for n in names if n.startswith("_") and n != "__version__"]
    assert not reaches, reaches


def test_no_private_attribute_of_another_modules_object_is_read():
    """An object's private data (`x._name = ...` in one module) read from another module,
    `chain._totals` or `builder._symbols[part]`: the owner's module offers a public way."""
    owned, reads = {}, []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = (node.targets if isinstance(node, ast.Assign) else
                       [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
            for target in targets:
                for t in ast.walk(target):
                    if isinstance(t, ast.Attribute) and t.attr.startswith("_"):
                        owned.setdefault(t.attr, set()).add(path)
            if (isinstance(node, ast.Attribute) and re.fullmatch(r"_[a-z]\w*", node.attr)
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                reads.append((path, node))
    reaches = [f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}"
               for path, node in reads if path not in owned.get(node.attr, {path})]
    assert not reaches, reaches


def test_no_private_attribute_of_another_module_is_used():
    """`lower._prepare(...)`-style reaches through a module object."""
    reaches = []
    for path in MODULES:
        text = path.read_text()
        aliases = {a.asname or a.name for m, _, node in imports(path)
                   if isinstance(node, ast.ImportFrom) and m.startswith("gradlab")
                   for a in node.names}
        for alias in aliases:
            for m in re.finditer(rf"\b{re.escape(alias)}\._[a-z]\w*", text):
                reaches.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    assert not reaches, reaches


def test_the_symbolic_side_never_imports_torch_or_numpy():
    for folder in ("symbolic", "documents"):
        for path in (PACKAGE / folder).rglob("*.py"):
            for module, _, node in imports(path):
                assert module.split(".")[0] not in ("torch", "numpy"), \
                    f"{path.relative_to(ROOT)}:{node.lineno} imports {module}"


def test_importing_the_symbolic_side_loads_no_torch():
    code = ("import sys, gradlab; gradlab.cell('lstm').jacobian_blocks(); "
            "import gradlab.documents.derivation; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600, check=True)
    assert out.stdout.strip() == "False"


def test_the_cli_defines_no_helpers_beyond_its_commands():
    """cli.py holds the command group, gradlab/commands/ the commands: every function there
    is a click command (parsing helpers live in options.py, logic in the library)."""
    tree = ast.parse((PACKAGE / "cli.py").read_text())
    defined = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert set(defined) <= {"Gradlab", "cli", "main", "_one_line"}, defined
    for path in (PACKAGE / "commands").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                assert node.decorator_list, f"{path.name}: {node.name} is not a command"


def test_citations_are_of_documents_in_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    found = []
    for name in tracked:
        path = ROOT / name
        if path.suffix not in (".py", ".md", ".toml", ".html") or not path.is_file():
            continue
        for m in re.finditer(r"\b(CELLS|THEORY|DESIGN)\.md\b", path.read_text(errors="ignore")):
            found.append(f"{name}: {m.group(0)}")
    assert not found, found


def test_the_top_level_holds_only_the_project():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    top = {name.split("/")[0] for name in tracked}
    allowed = {"pyproject.toml", "gradlab", "derivations", "tests", "reports", "README.md",
               ".ci", ".gitignore"}
    assert top <= allowed, sorted(top - allowed)
