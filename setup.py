"""Builds gems-aot: the AOT step (python -m aot) compiles every kernel variant into cubins and
generates C++ sources; CMake + ninja then build the extension (a Python-free shared library that
gems_aot loads with torch.ops.load_library).

Environment: GEMS_AOT_ARCHS (default 80,90,100), GEMS_AOT_JOBS (default: all cores),
GEMS_AOT_CACHE_DIR (default ~/.cache/gems_aot), GEMS_AOT_BUILD_DIR (default ./build).

A binary build (wheel, install) is named after its torch, CUDA and targets and pins its torch
release (build_tools/wheel_variant.py); the sdist carries the plain version.
"""

import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # pyproject.toml's setuptools>=70.1 is not enforced without build isolation
    sys.exit("gems-aot: the build needs setuptools >= 70.1 (for its bdist_wheel); "
             "pip install 'setuptools>=70.1,<82'")

ROOT = pathlib.Path(__file__).parent.resolve()
sys.path[:0] = [str(ROOT), str(ROOT / "build_tools")]
import wheel_variant  # noqa: E402  (build_tools/, no torch import)

LIBRARY = "libgems_aot.so"
EXTRAS = {"bench": ["matplotlib"], "models": ["transformers"], "test": ["pytest", "matplotlib", "transformers"]}
# What the build runs with and does not install itself (it builds against the installed torch, so
# without build isolation): module or program -> how to get it.
PREREQUISITES = {"torch": "pip install torch==2.14.1 (or 2.11, CUDA build)", "triton": "it comes with torch",
                 "numpy": "pip install numpy (the GEMM tuning tables are filled with it)",
                 "ninja": "pip install ninja", "cmake": "pip install cmake"}
MODULES = ("torch", "triton", "numpy")


def missing_prerequisites() -> list:
    missing = []
    for name, how in PREREQUISITES.items():
        found = importlib.util.find_spec(name) is not None if name in MODULES else shutil.which(name)
        if not found:
            missing.append(f"{name} ({how})")
    return missing


def cuda_include_dirs() -> list:
    """The CUDA headers c10/cuda includes: a CUDA toolkit's, else those of torch's nvidia wheels
    completed by the crt/ headers that triton bundles."""
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        include = pathlib.Path(home or "/nonexistent") / "include"
        if (include / "cuda.h").exists() and (include / "crt" / "host_config.h").exists():
            return [str(include)]
    dirs = []
    spec = importlib.util.find_spec("nvidia")
    for root in list(spec.submodule_search_locations) if spec else []:
        dirs += [str(h.parent) for h in sorted(pathlib.Path(root).glob("*/include/cuda.h"))][:1]
    triton = importlib.util.find_spec("triton")
    if triton and triton.submodule_search_locations:
        dirs.append(str(pathlib.Path(list(triton.submodule_search_locations)[0]) / "backends" / "nvidia" / "include"))
    if not dirs:
        raise RuntimeError("CUDA headers not found: install torch with CUDA (its nvidia wheels) or set CUDA_HOME")
    return dirs


def build_variant():
    """The binary build's variant (installed torch and CUDA, GEMS_AOT_ARCHS), or None for the sdist
    or where torch is missing (the build then stops with missing_prerequisites' message)."""
    if "sdist" in sys.argv[1:] or importlib.util.find_spec("torch") is None:
        return None
    import torch

    from aot.compiler import parse_archs

    archs = parse_archs(os.environ.get("GEMS_AOT_ARCHS", "80,90,100"))
    return wheel_variant.variant(wheel_variant.VERSION, torch.__version__, torch.version.cuda, archs)


VARIANT = build_variant()


class WheelPy3(bdist_wheel):
    def get_tag(self):
        # The library has no Python in it: any Python 3, no Python ABI; the platform stays.
        platform = super().get_tag()[2]
        return wheel_variant.Variant.python_tag, wheel_variant.Variant.abi_tag, platform


class BuildGems(build_ext):
    def get_ext_filename(self, ext_name):
        # One Python-free library per torch build, not per Python version.
        return os.path.join(*ext_name.split(".")[:-1], LIBRARY)

    def build_extension(self, ext):
        missing = missing_prerequisites()
        if missing:
            sys.exit("gems-aot: the build needs " + ", ".join(missing) + "; then run "
                     "pip install --no-build-isolation . (bash build_tools/setup.sh installs everything)")
        import torch

        jobs = os.environ.get("GEMS_AOT_JOBS") or str(os.cpu_count() or 1)
        build = pathlib.Path(os.environ.get("GEMS_AOT_BUILD_DIR") or ROOT / "build").resolve()
        gen, cmake_dir = build / "aot", build / "cmake"
        subprocess.check_call([sys.executable, "-m", "aot", "--out", str(gen), "--jobs", jobs], cwd=ROOT)

        torch_dir = pathlib.Path(torch.__file__).parent
        # A wheel's library finds torch beside it in site-packages; an in-tree one, the build's torch.
        in_tree = self.inplace or self.editable_mode
        includes = [torch_dir / "include", torch_dir / "include" / "torch" / "csrc" / "api" / "include"]
        configure = [
            "cmake",
            "-S",
            str(ROOT),
            "-B",
            str(cmake_dir),
            f"-DGEMS_GEN_DIR={gen}",
            "-DTORCH_INCLUDE_DIRS=" + ";".join(map(str, includes)),
            f"-DTORCH_LIBRARY_DIR={torch_dir / 'lib'}",
            f"-DGEMS_TORCH_RPATH={torch_dir / 'lib' if in_tree else '$ORIGIN/../torch/lib'}",
            "-DCUDA_INCLUDE_DIR=" + ";".join(cuda_include_dirs()),
            f"-DGLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
            f"-DGEMS_OUTPUT={pathlib.Path(LIBRARY).stem}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={cmake_dir / 'lib'}",
        ]
        if shutil.which("ninja"):
            configure += ["-G", "Ninja"]
        subprocess.check_call(configure)
        subprocess.check_call(["cmake", "--build", str(cmake_dir), "-j", jobs])

        target = pathlib.Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(cmake_dir / "lib" / LIBRARY, target)


setup(
    version=VARIANT.version if VARIANT else wheel_variant.VERSION,
    install_requires=list(VARIANT.requires) if VARIANT else ["torch>=2.11"],
    extras_require={"cuda": list(VARIANT.cuda_extra) if VARIANT else [], **EXTRAS},
    ext_modules=[Extension("gems_aot.libgems_aot", sources=[])],
    cmdclass={"build_ext": BuildGems, "bdist_wheel": WheelPy3},
)
