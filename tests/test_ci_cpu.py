"""The CI workflow (.github/workflows/wheels.yml): valid against GitHub's workflow schema (the copy
check-jsonschema ships), and its matrix is the one the build supports: every torch release the
README names, every target alone and all together, each built by build_tools/build_wheel.py."""

import pathlib
import subprocess
import sys

import pytest

# Installed by build_tools/setup.sh (so on every CI run); a GPU box without them skips.
yaml = pytest.importorskip("yaml")
pytest.importorskip("check_jsonschema")

from aot import compiler, targets  # noqa: E402
from conftest import ROOT  # noqa: E402

sys.path.insert(0, str(ROOT / "build_tools"))
import wheel_variant  # noqa: E402

WORKFLOW = ROOT / ".github" / "workflows" / "wheels.yml"


def validate(path: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True)


def test_workflow_is_valid():
    run = validate(WORKFLOW)
    assert run.returncode == 0, run.stdout + run.stderr


def test_an_invalid_workflow_is_rejected(tmp_path):
    broken = tmp_path / "wheels.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-22.04", "runs_on: ubuntu-22.04", 1))
    assert validate(broken).returncode != 0


@pytest.fixture(scope="module")
def jobs():
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]


def test_build_matrix_covers_the_supported_builds(jobs):
    matrix = jobs["build"]["strategy"]["matrix"]
    assert matrix["torch"] == ["2.11", "2.14"]
    archs = {t["name"]: compiler.parse_archs(t["archs"]) for t in matrix["targets"]}
    # Each CUDA target alone, named as its wheel's local version names it, and all of them together
    # (AMD images are built, not loaded: no AMD wheel).
    cuda = {arch: tag for arch, tag in wheel_variant.TARGET_TAGS.items() if arch in targets.CUDA_IDS}
    assert archs == {**{tag: (arch,) for arch, tag in cuda.items()}, "all": tuple(sorted(cuda))}
    steps = "\n".join(str(s.get("run", "")) for s in jobs["build"]["steps"])
    assert "build_tools/build_wheel.py --archs ${{ matrix.targets.archs }} --torch ${{ matrix.torch }}" in steps
    assert "python -m pytest tests" in steps


def test_gpu_suite_runs_only_where_a_gpu_runner_is_configured(jobs):
    gpu = jobs["gpu"]
    assert gpu["needs"] == "build" and "vars.GPU_RUNNER" in gpu["if"] and "gpu" in gpu["runs-on"]
    steps = "\n".join(str(s.get("run", "")) for s in gpu["steps"])
    assert "-m gems_aot demo" in steps and "-m pytest tests" in steps
