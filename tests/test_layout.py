"""The package's layout holds: subpackages by concern, imports pointing one way, the model free of the runtime,
every module with its test file."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import microgpt_jax

PKG = Path(microgpt_jax.__file__).parent
# what each layer may import (besides itself and the shared bottom: config, errors, files)
MAY_IMPORT = {
    "model": {"runtime"},  # only model/init.py's host-side start-up path, imported inside that function
    "corpus": set(),
    "storage": {"corpus", "model"},
    "runtime": set(),
    "training": {"model", "corpus", "storage", "runtime"},
    "runs": {"model", "corpus", "storage", "runtime", "training"},
    "view": {"model", "corpus", "storage", "runtime", "training", "runs"},
    "cli": {"model", "corpus", "storage", "runtime", "training", "runs", "view"},
}
BOTTOM = {"config", "errors", "files"}


def _modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> set[str]:
    """The microgpt_jax subpackages or modules ``path`` imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("microgpt_jax."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "microgpt_jax":
            found |= {alias.name for alias in node.names}
    return found


def test_imports_point_one_way() -> None:
    for path in _modules():
        rel = path.relative_to(PKG)
        if len(rel.parts) == 1:  # the package's own modules
            allowed = BOTTOM | ({"cli"} if rel.stem in ("__init__", "__main__") else set())
            if rel.stem in BOTTOM:
                allowed = BOTTOM
        else:
            allowed = MAY_IMPORT[rel.parts[0]] | BOTTOM | {rel.parts[0]}
        assert _imports(path) <= allowed, f"{rel} imports {sorted(_imports(path) - allowed)}"


def test_no_module_is_long_and_none_shares_a_name_with_its_function() -> None:
    for path in _modules():
        rel = path.relative_to(PKG)
        assert len(path.read_text().splitlines()) <= 420, f"{rel} is over 420 lines"
        functions = {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}
        assert path.stem not in functions, f"{rel} defines {path.stem}()"


def test_the_model_and_its_loss_import_no_runtime() -> None:
    code = (
        "import sys, jax.numpy as jnp\n"
        "from microgpt_jax.config import GPTConfig\n"
        "from microgpt_jax.model.init import init_params\n"
        "from microgpt_jax.model.loss import loss_fn\n"
        "import jax\n"
        "config = GPTConfig(vocab_size=5, n_embd=8, n_head=2, block_size=4)\n"
        "params = init_params(jax.random.key(0), config)\n"
        "loss = loss_fn(params, jnp.zeros((1, 5), jnp.int32), jnp.asarray([4]), config)\n"
        "assert float(loss) > 0\n"
        "print(sorted(m for m in sys.modules if m.startswith(('microgpt_jax.runtime', 'microgpt_jax.runs',"
        " 'microgpt_jax.training', 'microgpt_jax.cli', 'microgpt_jax.storage'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_public_name_resolves() -> None:
    for name in microgpt_jax.__all__:
        assert getattr(microgpt_jax, name) is not None, name
    assert callable(microgpt_jax.train) and callable(microgpt_jax.sample) and callable(microgpt_jax.gpt)


def _module_imports(path: Path) -> set[str]:
    """The package's modules ``path`` imports, as dotted names, at any depth of the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_argparse_lives_in_the_cli_and_no_module_imports_itself_back() -> None:
    dotted = {".".join(("microgpt_jax", *p.relative_to(PKG).with_suffix("").parts)): p for p in _modules()}
    imports = {m: _module_imports(p) for m, p in dotted.items()}
    assert sorted(m for m, names in imports.items() if "argparse" in names) == ["microgpt_jax.cli.parser"]
    graph = {m: {n for n in names if n in dotted and n != m} for m, names in imports.items() if m != "microgpt_jax"}
    done: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, f"import cycle: {' -> '.join((*path, m))}"
        if m in done:
            return
        for n in sorted(graph.get(m, ())):
            visit(n, (*path, m))
        done.add(m)

    for m in sorted(graph):
        visit(m, ())


TESTS = Path(__file__).resolve().parent


def test_every_module_has_its_test_file() -> None:
    """tests/ mirrors the package: microgpt_jax/<sub>/<name>.py is tested in tests/<sub>/test_<name>.py (and
    microgpt_jax/<name>.py in tests/test_<name>.py), a file with at least one test."""
    missing, empty = [], []
    for path in _modules():
        rel = path.relative_to(PKG)
        if rel.name in ("__init__.py", "__main__.py"):
            continue
        test_file = TESTS.joinpath(*rel.parts[:-1], f"test_{rel.name}")
        if not test_file.is_file():
            missing.append(str(test_file.relative_to(TESTS.parent)))
        elif not any(
            isinstance(n, ast.FunctionDef) and n.name.startswith("test_") for n in ast.parse(test_file.read_text()).body
        ):
            empty.append(str(test_file.relative_to(TESTS.parent)))
    assert not missing, f"modules without a test file: {missing}"
    assert not empty, f"test files without a test: {empty}"
    # each subfolder of tests/ that mirrors a subpackage is a package, so that test files of the same name in two
    # subfolders (runs/test_loop.py, training/test_loop.py) do not collide
    for sub in sorted(p.parent.name for p in PKG.glob("*/__init__.py")):
        assert (TESTS / sub / "__init__.py").is_file(), f"tests/{sub}/__init__.py is missing"
