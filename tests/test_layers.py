"""The package's layout by role (docs/architecture.md): the edges that import-linter cannot
see (modules named by string), the top level of recbole_lda/, short functions, and the one
command entry point `python -m recbole_lda COMMAND`."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_registered_model_module_exists_in_a_model_layer():
    from recbole_lda.config.registry import MODEL_MODULES
    from recbole_lda.model import WatchTimeRecommender

    for name, module_name in MODEL_MODULES.items():
        assert module_name.split(".")[0] == "baselines" or module_name.startswith("recbole_lda.model."), module_name
        cls = getattr(importlib.import_module(module_name), name)
        assert issubclass(cls, WatchTimeRecommender), name


def test_every_converter_module_exists_in_dataset_prep():
    from dataset_prep.common import CONVERTERS
    from recbole_lda.config.registry import known_datasets

    for name, module_name in CONVERTERS.items():
        assert module_name.startswith("dataset_prep."), module_name
        module = importlib.import_module(module_name)
        for attr in ("VERSION", "read_options", "raw_files", "default_raw_dir", "convert"):
            assert hasattr(module, attr), f"{module_name} lacks {attr}"
        assert name in known_datasets(), f"{name} has a converter but no properties/dataset/{name}.yaml"


def test_named_converters_and_raw_row_formats_are_converter_modules():
    from dataset_prep.common import CONVERTERS, NAMED_CONVERTERS
    from dataset_prep.raw_rows import FORMATS
    from recbole_lda.config.registry import known_converters

    assert sorted(NAMED_CONVERTERS) == sorted(known_converters())  # properties/converter/<name>.yaml each
    modules = set(CONVERTERS.values()) | set(NAMED_CONVERTERS.values())
    assert set(FORMATS) == modules  # every converter's raw rows can be predicted from
    for module_name in NAMED_CONVERTERS.values():
        module = importlib.import_module(module_name)
        for attr in ("VERSION", "read_options", "raw_files", "default_raw_dir", "convert"):
            assert hasattr(module, attr), f"{module_name} lacks {attr}"


def test_top_level_of_the_package_holds_only_subpackages():
    top = ROOT / "recbole_lda"
    modules = sorted(p.name for p in top.glob("*.py"))
    assert modules == ["__init__.py", "__main__.py", "compat.py"]
    for folder in (p for p in top.iterdir() if p.is_dir() and p.name != "__pycache__"):
        assert (folder / "__init__.py").is_file(), f"{folder.name}/ is not a package"


def test_no_function_is_longer_than_60_lines():
    long = []
    for package in ("recbole_lda", "baselines", "dataset_prep"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})")
    assert not long, "split into named steps: " + ", ".join(long)


def _module(*args):
    return subprocess.run([sys.executable, "-m", "recbole_lda", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_python_m_recbole_lda_lists_and_dispatches_commands():
    from recbole_lda.cli import COMMANDS

    listing = _module("--help")
    assert listing.returncode == 0 and all(f"  {name} " in listing.stdout for name in COMMANDS)
    typo = _module("compar", "--models=VR")
    assert typo.returncode == 2 and typo.stderr.startswith("error: unknown command 'compar'; did you mean compare?")
    # the command's own argument checks answer, before any heavy work
    bad = _module("compare", "--models=VR", "--output_dir=x", "--seeds=0")
    assert bad.returncode == 2 and "--seeds=0: expected an integer >= 1" in bad.stderr


@pytest.mark.parametrize("name", ["run", "compare", "tune", "leaderboard", "curves", "predict", "download"])
def test_every_console_script_is_a_command(name):
    import recbole_lda.cli as cli

    script = "run_main" if name == "run" else f"{name}_main"
    assert callable(getattr(cli, script)) and name in cli.COMMANDS
