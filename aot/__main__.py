"""python -m aot --out BUILD_DIR [--archs 80,90,100] [--jobs N]

Compiles every declared variant for every target (cached) and writes the generated C++ sources.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aot", description=__doc__)
    parser.add_argument("--out", required=True, type=pathlib.Path, help="folder for generated sources")
    parser.add_argument("--archs", default=os.environ.get("GEMS_AOT_ARCHS", "80,90,100"))
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("GEMS_AOT_JOBS", os.cpu_count() or 1)))
    args = parser.parse_args(argv)

    import triton

    from aot import codegen, compiler, ops

    archs = compiler.parse_archs(args.archs)
    families = ops.families()
    jobs = codegen.jobs_for(families, archs)
    sys.stderr.write(
        f"[gems-aot] triton {triton.__version__}, targets {', '.join(compiler.TARGET_NAMES[a] for a in archs)}, "
        f"{len(jobs)} images, {args.jobs} workers, cache {compiler.cache_dir()}\n"
    )
    results, compiled = compiler.compile_all(jobs, args.jobs)
    manifest = codegen.emit(args.out, families, archs, results, triton.__version__, args.jobs)
    sys.stderr.write(
        f"[gems-aot] {manifest['kernels']} kernels, images per target "
        + ", ".join(f"{compiler.TARGET_NAMES[int(a)]}: {n}" for a, n in manifest["images_per_arch"].items())
        + f", {manifest['cubin_bytes'] / 1e6:.1f} MB of cubins in {manifest['pack_bytes'] / 1e6:.1f} MB of packs"
        + f", {compiled} compiled\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
