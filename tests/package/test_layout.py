"""The package layout keeps its promises (issue 14): the scoring side never imports TensorFlow or the
training code, and no module imports another module's private names."""
import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "sparkad"

EXECUTOR_SIDE = ["sparkad.score.engines", "sparkad.score.batches", "sparkad.score.run", "sparkad.model.directory",
                 "sparkad.model.scores", "sparkad.analysis.products", "sparkad.analysis.astf",
                 "sparkad.analysis.run_checks", "sparkad.monitor.runs"]


def test_scoring_side_imports_no_tensorflow_and_no_training_code():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in EXECUTOR_SIDE) +
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras') or m.startswith('sparkad.train'))\n"
            "print(bad)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"


def test_no_module_imports_private_names_of_another():
    found = []
    for p in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sparkad"):
                found += [f"{p.relative_to(PACKAGE)}: {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and a.name != "__version__"]
    assert not found


def test_every_stage_is_a_package():
    for stage in ("core", "generate", "extract", "train", "model", "score", "analysis", "evaluate", "monitor", "report"):
        assert (PACKAGE / stage / "__init__.py").is_file(), stage
    # the flat modules of the first wave are gone: only the entry points stay at the top
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "cli.py", "demo.py"]
