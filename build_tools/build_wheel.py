"""Builds a gems-aot binary wheel (or the sdist) on a machine with or without a GPU.

    python build_tools/build_wheel.py [--archs 80,90,100] [--torch 2.14] [--cuda 13] [--out dist]
    python build_tools/build_wheel.py --sdist [--out dist]

A wheel is built for the installed torch and its CUDA (--torch and --cuda only check that they are
the ones asked for: a wheel for another torch is built where that torch is installed) and the
targets of --archs. It is named after them (build_tools/wheel_variant.py), for example
gems_aot-0.1.0+torch214.cu130.sm80.sm90a.sm100a-py3-none-linux_x86_64.whl. The kernel compile runs
first, where its progress shows (python -m aot), then `pip wheel` builds the extension; both use
GEMS_AOT_CACHE_DIR, so images already in the kernel cache are not compiled again. The build folder
is --build-dir (default build/wheel-<archs>, kept for the next build of the same targets).

The finished wheel is checked: its name, tag and Requires-Dist; that its library links no
libpython, uses no Python symbol and finds torch's libraries relative to itself (RUNPATH
$ORIGIN/../torch/lib, not the build machine's folder); its size against the limits (SIZE_LIMIT_MB).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "build_tools")]
import wheel_variant  # noqa: E402

# Wheel size limits: the package index's default file limit for every target, less for one.
SIZE_LIMIT_MB = {"all": 100, "one": 40}


def sdist_files(root: pathlib.Path = ROOT) -> list:
    """The files the sdist of the tree at root holds (setuptools' own list, from MANIFEST.in)."""
    with tempfile.TemporaryDirectory() as egg_base:
        subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", egg_base], cwd=root,
                       check=True, capture_output=True)
        (sources,) = pathlib.Path(egg_base).glob("*.egg-info/SOURCES.txt")
        return [f for f in sources.read_text().split() if not f.startswith(egg_base)]  # less its egg-info


def needs_python(library: pathlib.Path) -> list:
    """What in the library ties it to a Python: libpython in its NEEDED entries, undefined Py* symbols."""
    dynamic = subprocess.run(["readelf", "-d", str(library)], check=True, capture_output=True, text=True).stdout
    needed = re.findall(r"\(NEEDED\).*\[(.*)\]", dynamic)
    symbols = subprocess.run(["nm", "-D", "--undefined-only", str(library)], check=True, capture_output=True,
                             text=True).stdout.split()
    return [n for n in needed if n.startswith("libpython")] + [s for s in symbols if re.match(r"_?Py[A-Z_]", s)]


def runpath(library: pathlib.Path) -> list:
    """The library's RUNPATH / RPATH entries (a wheel's must be relative: $ORIGIN/...)."""
    dynamic = subprocess.run(["readelf", "-d", str(library)], check=True, capture_output=True, text=True).stdout
    return [p for paths in re.findall(r"\((?:RUNPATH|RPATH)\).*\[(.*)\]", dynamic) for p in paths.split(":")]


def check_wheel(path: pathlib.Path, expected: wheel_variant.Variant) -> list:
    """Problems with a built wheel: its name, tag, Requires-Dist and library."""
    problems = []
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        info = f"gems_aot-{expected.version}.dist-info/"
        tags = re.findall(r"^Tag: (.*)$", wheel.read(info + "WHEEL").decode(), re.M)
        metadata = wheel.read(info + "METADATA").decode()
        requires = re.findall(r"^Requires-Dist: (.*)$", metadata, re.M)
        if not any(t.startswith(f"{expected.python_tag}-{expected.abi_tag}-") for t in tags):
            problems.append(f"tag {tags}, not {expected.python_tag}-{expected.abi_tag}-<platform>")
        if path.name != expected.wheel_name(tags[0].split("-")[-1] if tags else "?"):
            problems.append(f"name {path.name}, not {expected.wheel_name('<platform>')}")
        for requirement in expected.requires + tuple(f'{r}; extra == "cuda"' for r in expected.cuda_extra):
            if requirement not in requires:
                problems.append(f"no Requires-Dist: {requirement} (has {requires})")
        if "gems_aot/libgems_aot.so" not in names:
            return problems + ["no gems_aot/libgems_aot.so"]
        with tempfile.TemporaryDirectory() as tmp:
            library = pathlib.Path(wheel.extract("gems_aot/libgems_aot.so", tmp))
            python = needs_python(library)
            if python:
                problems.append(f"the library needs Python: {python[:5]}")
            absolute = [p for p in runpath(library) if not p.startswith("$ORIGIN")]
            if absolute:
                problems.append(f"the library's RUNPATH names build-machine folders: {absolute}")
    return problems


def build_wheel(args, variant: wheel_variant.Variant) -> pathlib.Path:
    archs = ",".join(map(str, args.archs))
    build = (args.build_dir or ROOT / "build" / f"wheel-{archs.replace(',', '_')}").resolve()
    env = dict(os.environ, GEMS_AOT_ARCHS=archs, GEMS_AOT_BUILD_DIR=str(build))
    if args.jobs:
        env["GEMS_AOT_JOBS"] = str(args.jobs)
    subprocess.check_call([sys.executable, "-m", "aot", "--out", str(build / "aot")], cwd=ROOT, env=env)
    args.out.mkdir(parents=True, exist_ok=True)
    subprocess.check_call([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps",
                           "--no-cache-dir", "-w", str(args.out), str(ROOT)], cwd=ROOT, env=env)
    built = list(args.out.glob(f"gems_aot-{variant.version}-*.whl"))
    if len(built) != 1:
        sys.exit(f"build_wheel: expected one gems_aot-{variant.version} wheel in {args.out}, found {built}")
    return built[0]


def build_sdist(out: pathlib.Path) -> pathlib.Path:
    out.mkdir(parents=True, exist_ok=True)
    name = subprocess.run([sys.executable, "-c", "import sys\nfrom setuptools import build_meta\n"
                           "print(build_meta.build_sdist(sys.argv[1]))", str(out)],
                          cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()[-1]
    return out / name


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="80,90,100", help="CUDA targets among 80, 90, 100 (default all)")
    parser.add_argument("--torch", help="the torch release the wheel is for (X.Y): checked against the installed")
    parser.add_argument("--cuda", help="the CUDA major the wheel is for: checked against the installed torch's")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "dist")
    parser.add_argument("--build-dir", type=pathlib.Path)
    parser.add_argument("--jobs", type=int, help="parallel compiles (default: all cores)")
    parser.add_argument("--sdist", action="store_true", help="build the sdist instead")
    args = parser.parse_args(argv)

    if args.sdist:
        path = build_sdist(args.out)
        print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
        return 0

    import torch

    from aot.compiler import parse_archs

    args.archs = parse_archs(args.archs)
    installed = wheel_variant.torch_release(torch.__version__)
    if args.torch and wheel_variant.torch_release(args.torch) != installed:
        sys.exit(f"build_wheel: torch {args.torch} asked for, but torch {torch.__version__} is installed; build "
                 f"where torch {args.torch} is installed (pip install 'torch=={args.torch}.*')")
    cuda = wheel_variant.cuda_release(torch.version.cuda)
    if args.cuda and int(args.cuda.split(".")[0]) != cuda[0]:
        sys.exit(f"build_wheel: CUDA {args.cuda} asked for, but the installed torch {torch.__version__} is built "
                 f"for CUDA {torch.version.cuda}; build where a torch for CUDA {args.cuda} is installed")
    variant = wheel_variant.variant(wheel_variant.VERSION, torch.__version__, torch.version.cuda, args.archs)
    print(f"[build_wheel] gems-aot {variant.version}: torch {torch.__version__} (CUDA {torch.version.cuda}), "
          f"requires {', '.join(variant.requires)}", flush=True)

    path = build_wheel(args, variant)
    problems = check_wheel(path, variant)
    size_mb = path.stat().st_size / 1e6
    limit = SIZE_LIMIT_MB["one" if len(args.archs) == 1 else "all"]
    if size_mb >= limit:
        problems.append(f"{size_mb:.1f} MB, over the {limit} MB limit")
    with zipfile.ZipFile(path) as wheel:
        library = sum(i.file_size for i in wheel.infolist() if i.filename == "gems_aot/libgems_aot.so")
    print(f"[build_wheel] {path} ({size_mb:.1f} MB; libgems_aot.so {library / 1e6:.1f} MB)")
    for problem in problems:
        print(f"[build_wheel] problem: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
