"""Codegen of the C++ side of the declarations, into the build folder.

gems_kernels.h / .cpp  the kernel table (per kernel: name, signature, images per target with
                       their entry point and Triton's launch metadata) and one lookup namespace per grid
gems_cubins.S / .bin   every cubin, embedded with .incbin (fast to build, no giant C arrays)
gems_registration.cpp  TORCH_LIBRARY(gems) schemas, CUDA and Meta impls, the aten override table
gems_<family>_ops.h    the prototypes of each family's C++ functions (aot/schemas.py)
gems_manifest.json     what was built, for `gems_aot.info()` and the tests
"""

from __future__ import annotations

import json
import pathlib

from aot.schemas import family_header
from aot.variants import DTYPES

ALIGN = 128  # cubin alignment inside the blob


def _write_if_changed(path: pathlib.Path, text: str | bytes):
    """Leaves unchanged files untouched so ninja rebuilds nothing when nothing changed."""
    data = text.encode() if isinstance(text, str) else text
    if path.exists() and path.read_bytes() == data:
        return
    path.write_bytes(data)


def _cpp_str(s: str) -> str:
    return json.dumps(s)


def build_table(families, archs, results):
    """Assigns kernel ids. Returns (kernels, grid_tables).

    kernels: [{symbol, signature, num_args, images: [(arch, cubin, meta, params)]}]
    grid_tables: [(grid, [kernel id or -1 per point], launch param names)]
    """
    kernels, grid_tables = [], []
    for fam in families:
        for grid in fam.grids:
            ids, params = [], []
            for point in grid.points():
                per_arch = {a: grid.make(point, a) for a in archs}
                built = {a: v for a, v in per_arch.items() if v is not None}
                if not built:
                    ids.append(-1)
                    continue
                # A point may compile another kernel per target (its entry point is per image),
                # but the driver passes one argument list: the runtime types must agree.
                sigs = {tuple(t for _, t in v.runtime_args) for v in built.values()}
                symbol = grid.symbol(point)
                if len(sigs) != 1:
                    raise ValueError(f"{symbol}: the runtime argument types must be the same on every target")
                for v in built.values():
                    params.extend(p for p in v.launch_params if p not in params)
                images = []
                for a, v in sorted(built.items()):
                    cubin, meta = results[(symbol, a)]
                    images.append((a, cubin, meta, dict(v.constexprs)))
                runtime_args = next(iter(sigs))
                ids.append(len(kernels))
                kernels.append(
                    {
                        "symbol": symbol,
                        "signature": ",".join(runtime_args),
                        "num_args": len(runtime_args),
                        "images": images,
                    }
                )
            if len(params) > 4:
                raise ValueError(f"grid {grid.name}: at most 4 launch params")
            grid_tables.append((grid, ids, params))
    for grid, ids, params in grid_tables:
        for i in ids:
            if i >= 0:
                kernels[i]["param_names"] = params
    return kernels, grid_tables


def jobs_for(families, archs):
    from aot.compiler import Job

    jobs = []
    for fam in families:
        for grid in fam.grids:
            for point in grid.points():
                for a in archs:
                    v = grid.make(point, a)
                    if v is not None:
                        jobs.append(Job(grid.symbol(point), v, a))
    return jobs


def _grid_header(grid, ids, params) -> str:
    lines = [f"namespace {grid.name} {{"]
    if grid.doc:
        lines.insert(0, f"// {grid.doc}")
    for axis, values in grid.axes:
        enum = ", ".join(f"{axis}_{v} = {i}" for i, v in enumerate(values))
        lines.append(f"enum : int {{ {enum} }};")
        lines.append(f"constexpr int kNum_{axis} = {len(values)};")
        if all(v in DTYPES for v in values):
            lines.append(f"inline int {axis}_of(c10::ScalarType t) {{")
            lines.append("  switch (t) {")
            for i, v in enumerate(values):
                lines.append(f"    case c10::ScalarType::{DTYPES[v][1]}: return {i};")
            lines.append("    default: return -1;")
            lines.append("  }")
            lines.append("}")
    for i, p in enumerate(params):
        lines.append(f"constexpr int kParam_{p} = {i};")
    lines.append(f"inline constexpr int32_t kTable[{len(ids)}] = {{{', '.join(map(str, ids))}}};")
    args = ", ".join(f"int {a}" for a, _ in grid.axes)
    index = "0"
    for a, values in grid.axes:
        index = f"({index}) * {len(values)} + {a}"
    lines.append(f"inline int find({args}) {{ return kTable[{index}]; }}")
    lines.append(f"}}  // namespace {grid.name}")
    return "\n".join(lines)


def emit(out_dir: pathlib.Path, families, archs, results, triton_version: str):
    out_dir.mkdir(parents=True, exist_ok=True)
    kernels, grid_tables = build_table(families, archs, results)

    # The cubin blob.
    blob, images = bytearray(), []
    for k in kernels:
        k["first_image"] = len(images)
        for arch, cubin, meta, constexprs in k["images"]:
            blob.extend(b"\0" * (-len(blob) % ALIGN))
            offset = len(blob)
            blob.extend(cubin)
            params = [int(constexprs.get(p, 0)) for p in k.get("param_names", [])]
            images.append((arch, offset, len(cubin), meta, params + [0] * (4 - len(params))))
    blob_path = out_dir / "gems_cubins.bin"
    _write_if_changed(blob_path, bytes(blob))
    _write_if_changed(
        out_dir / "gems_cubins.S",
        "\n".join(
            [
                '  .section .rodata.gems_cubins, "a"',
                f"  .balign {ALIGN}",
                "  .globl gems_cubin_blob",
                "gems_cubin_blob:",
                f'  .incbin "{blob_path.resolve()}"',
                "  .byte 0",
                '  .section .note.GNU-stack, "", @progbits',
                "",
            ]
        ),
    )

    header = [
        "// Generated by aot/codegen.py from the declarations in aot/family_*.py. Do not edit.",
        "#pragma once",
        "#include <c10/core/ScalarType.h>",
        "#include <cstdint>",
        '#include "runtime/kernels.h"',
        "",
        "extern \"C\" const unsigned char gems_cubin_blob[];",
        "",
        "namespace gems::gen {",
        f"constexpr int kNumKernels = {len(kernels)};",
        f"constexpr int kNumImages = {len(images)};",
        f"constexpr int kArchs[] = {{{', '.join(map(str, archs))}}};",
        f"constexpr int kNumArchs = {len(archs)};",
        f"constexpr const char* kTritonVersion = {_cpp_str(triton_version)};",
        f"constexpr uint64_t kCubinBytes = {len(blob)};",
        "extern const KernelSpec kKernels[kNumKernels > 0 ? kNumKernels : 1];",
        "extern const KernelImage kImages[kNumImages > 0 ? kNumImages : 1];",
        "",
    ]
    for grid, ids, params in grid_tables:
        header += [_grid_header(grid, ids, params), ""]
    header.append("}  // namespace gems::gen")
    _write_if_changed(out_dir / "gems_kernels.h", "\n".join(header) + "\n")

    src = [
        "// Generated by aot/codegen.py. Do not edit.",
        '#include "gems_kernels.h"',
        "",
        "namespace gems::gen {",
        "const KernelSpec kKernels[kNumKernels > 0 ? kNumKernels : 1] = {",
    ]
    for k in kernels:
        src.append(
            f"  {{{_cpp_str(k['symbol'])}, {_cpp_str(k['signature'])}, {k['num_args']}, "
            f"{_cpp_str(k['images'][0][2]['triton_version'])}, {k['first_image']}, {len(k['images'])}}},"
        )
    if not kernels:
        src.append("  {}")
    src += ["};", "const KernelImage kImages[kNumImages > 0 ? kNumImages : 1] = {"]
    for arch, offset, size, m, params in images:
        src.append(
            f"  {{{arch}, {_cpp_str(m['name'])}, {offset}, {size}, {m['num_warps']}, {m['num_ctas']}, {m['shared']}, "
            f"{m['global_scratch_size']}, {m['global_scratch_align']}, {m['profile_scratch_size']}, "
            f"{m['profile_scratch_align']}, {str(bool(m['launch_pdl'])).lower()}, "
            f"{str(bool(m['launch_cooperative_grid'])).lower()}, {{{', '.join(map(str, params))}}}}},"
        )
    if not images:
        src.append("  {}")
    src += ["};", "}  // namespace gems::gen", ""]
    _write_if_changed(out_dir / "gems_kernels.cpp", "\n".join(src))

    _write_if_changed(out_dir / "gems_registration.cpp", registration_source(families))
    for fam in families:
        _write_if_changed(out_dir / fam.cpp_header, family_header(fam.module, fam.gems_ops, fam.aten_overrides))
        if fam.generated_sources:
            for name, text in fam.generated_sources().items():
                _write_if_changed(out_dir / name, text)

    per_arch = {a: sum(1 for im in images if im[0] == a) for a in archs}
    manifest = {
        "triton_version": triton_version,
        "archs": list(archs),
        "kernels": len(kernels),
        "images_per_arch": {str(a): n for a, n in per_arch.items()},
        "cubin_bytes": len(blob),
        "gems_ops": [o.name for f in families for o in f.gems_ops],
        "aten_overrides": {o.name: f.module.split("_", 1)[1] for f in families for o in f.aten_overrides},
        "variants": [
            {
                "symbol": k["symbol"],
                "signature": k["signature"],
                "images": [
                    {"arch": a, "shared": m["shared"], "num_warps": m["num_warps"], "bytes": len(c)}
                    for a, c, m, _ in k["images"]
                ],
            }
            for k in kernels
        ],
    }
    _write_if_changed(out_dir / "gems_manifest.json", json.dumps(manifest, indent=1) + "\n")
    return manifest


def registration_source(families) -> str:
    bench_cases = [case for f in families if f.bench_cases for case in f.bench_cases()]
    lines = [
        "// Generated by aot/codegen.py from GEMS_OPS, ATEN_OVERRIDES and bench_cases(). Do not edit.",
        "#include <torch/library.h>",
        "",
        "#include <string>",
        "",
        '#include "runtime/overrides.h"',
    ]
    lines += [f'#include "{f.cpp_header}"' for f in families]
    lines += ["", "namespace {", "// What `python -m gems_aot bench` measures (aot/ops.py bench_case).",
              f'constexpr const char* kBenchCases = R"gems_json({json.dumps(bench_cases, separators=(",", ":"))})gems_json";',
              "}  // namespace", "", "TORCH_LIBRARY(gems, m) {"]
    lines += [f"  m.def({_cpp_str(o.schema)});" for f in families for o in f.gems_ops]
    lines.append('  m.def("_bench_cases() -> str", []() -> std::string { return kBenchCases; });')
    lines += ["}", "", "TORCH_LIBRARY_IMPL(gems, CUDA, m) {"]
    lines += [f"  m.impl({_cpp_str(o.name)}, TORCH_FN(gems::cuda::{o.cpp}));" for f in families for o in f.gems_ops]
    lines += ["}", "", "TORCH_LIBRARY_IMPL(gems, Meta, m) {"]
    lines += [f"  m.impl({_cpp_str(o.name)}, TORCH_FN(gems::meta::{o.cpp}));" for f in families for o in f.gems_ops]
    lines += ["}", "", "namespace gems {", "namespace {"]
    overrides = [(f, o) for f in families for o in f.aten_overrides]
    for _, o in overrides:
        lines.append(
            f"void install_{o.cpp}(torch::Library& m) {{ m.impl({_cpp_str(o.name)}, TORCH_FN(aten_impl::{o.cpp})); }}"
        )
    lines += ["}  // namespace", "", "const AtenOverride kAtenOverrides[] = {"]
    for f, o in overrides:
        family = f.module.split("_", 1)[1]
        lines.append(f"  {{{_cpp_str(o.name)}, {_cpp_str(family)}, &install_{o.cpp}}},")
    lines += ["};", f"const int kNumAtenOverrides = {len(overrides)};", "}  // namespace gems", ""]
    return "\n".join(lines)
