"""The wheel's name, tag and metadata (build_tools/wheel_variant.py) and the sdist's file list
(MANIFEST.in through setuptools, build_tools/build_wheel.py:sdist_files); no build here, it takes
minutes (build_tools/build_wheel.py builds and checks a wheel)."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT / "build_tools") not in sys.path:
    sys.path.insert(0, str(ROOT / "build_tools"))

import build_wheel  # noqa: E402
import wheel_variant  # noqa: E402


def test_variant_names_torch_cuda_and_targets():
    v = wheel_variant.variant("0.1.0", "2.14.1+cu130", "13.0", (100, 80, 90))
    assert v.version == "0.1.0+torch214.cu130.sm80.sm90a.sm100a"
    assert v.wheel_name("linux_x86_64") == "gems_aot-0.1.0+torch214.cu130.sm80.sm90a.sm100a-py3-none-linux_x86_64.whl"
    assert v.requires == ("torch==2.14.*",)
    assert v.cuda_extra == ("cuda-toolkit[cudart]==13.*",)
    one = wheel_variant.variant("0.1.0", "2.11.0", "12.8", [90])
    assert one.wheel_name("linux_aarch64") == "gems_aot-0.1.0+torch211.cu128.sm90a-py3-none-linux_aarch64.whl"
    assert one.requires == ("torch==2.11.*",) and one.cuda_extra == ("cuda-toolkit[cudart]==12.*",)


def test_variant_is_a_valid_version_that_pip_orders():
    packaging = pytest.importorskip("packaging.version")
    versions = [packaging.Version(wheel_variant.variant("0.1.0", t, "13.0", [90]).version)
                for t in ("2.11.0", "2.14.1+cu130")]
    assert all(v.public == "0.1.0" for v in versions)
    assert versions[0].local == "torch211.cu130.sm90a" and versions[0] < versions[1]


@pytest.mark.parametrize("torch_version, cuda, archs", [
    ("2.14.1+cpu", None, [90]),  # a torch without CUDA
    ("2.14.1", "13.0", [75]),  # a target gems does not build
    ("2.14.1", "13.0", []),
    ("nightly", "13.0", [90]),
])
def test_variant_rejects(torch_version, cuda, archs):
    with pytest.raises(ValueError):
        wheel_variant.variant("0.1.0", torch_version, cuda, archs)


@pytest.fixture(scope="module")
def fake_tree(tmp_path_factory):
    """A source tree with the build's own files (setup.py, pyproject.toml, MANIFEST.in, ...) and a
    stand-in for every folder, plus the build output an sdist must leave out."""
    tree = tmp_path_factory.mktemp("tree")
    for name in ("setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "CMakeLists.txt",
                 "build_tools/wheel_variant.py", "build_tools/build_wheel.py", "aot/__init__.py", "aot/compiler.py",
                 "aot/targets.py"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tree / name)
    sources = ["aot/tuning/sm90.json", "csrc/runtime/lzma.cpp", "kernels/gemm.py", "python/gems_aot/__init__.py",
               "tests/test_x_cpu.py", "docs/TESTING.md"]
    output = ["python/gems_aot/libgems_aot.so", "build/cmake/lib/libgems_aot.so", "build/aot/gems_kernels.cpp",
              "build/lib/gems_aot/__init__.py", "csrc/runtime/lzma.o", "tests/__pycache__/test_x_cpu.cpython-311.pyc"]
    for name in sources + output:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("")
    return tree, sources, output


def test_sdist_holds_sources_and_no_build_output(fake_tree):
    tree, sources, output = fake_tree
    files = set(build_wheel.sdist_files(tree))
    assert {"setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "CMakeLists.txt"} <= files
    assert set(sources) <= files
    assert not set(output) & files
    assert not [f for f in files if f.startswith("build/") or f.endswith((".so", ".o", ".pyc"))]


def test_sdist_of_this_tree_has_every_tracked_source():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode:
        pytest.skip("not a git checkout")
    wanted = {f for f in tracked.stdout.split() if not f.startswith((".ci/", ".github/", ".gitignore"))}
    files = set(build_wheel.sdist_files(ROOT))
    assert sorted(wanted - files) == []
    assert not [f for f in files if f.startswith("build/") or f.endswith((".so", ".o", ".pyc"))]


def test_needs_python_finds_python_symbols(tmp_path):
    if not (shutil.which("readelf") and shutil.which("nm") and shutil.which("cc")):
        pytest.skip("needs a C compiler and binutils")
    sources = {"clean": "int f(void) { return 1; }", "python": "extern int Py_IsInitialized(void);\n"
               "int f(void) { return Py_IsInitialized(); }"}
    found = {}
    for name, source in sources.items():
        (tmp_path / f"{name}.c").write_text(source)
        subprocess.run(["cc", "-shared", "-fPIC", "-o", tmp_path / f"{name}.so", tmp_path / f"{name}.c"], check=True)
        found[name] = build_wheel.needs_python(tmp_path / f"{name}.so")
    assert found == {"clean": [], "python": ["Py_IsInitialized"]}
