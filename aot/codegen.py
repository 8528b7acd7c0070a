"""Codegen of the C++ side of the declarations, into the build folder.

gems_kernels.h / .cpp  the kernel table (per kernel: name, signature, images per target with
                       their entry point, place in a pack and Triton's launch metadata), the pack
                       and chunk tables, and one lookup namespace per grid
gems_pack_<target>.bin each target's images (gems_pack_sm90a.bin, gems_pack_gfx942.bin), compressed in chunks (aot/packs.py)
gems_packs.S           embeds the packs with .incbin by file name (found through the compiler's
                       -I of this folder: no absolute path in the sources)
gems_sources.cmake     the generated sources and packs, for CMakeLists.txt (nothing is globbed)
gems_registration.cpp  TORCH_LIBRARY(gems) schemas, CUDA and Meta impls, the aten override table
gems_<family>_ops.h    the prototypes of each family's C++ functions (aot/schemas.py)
gems_manifest.json     what was built (sizes, and every image's SHA-256, for the tests)

The output folder belongs to this step: files in it that a run does not produce (left by a
declaration that no longer exists) are removed.
"""

from __future__ import annotations

import hashlib
import json
import pathlib

from aot import packs as kernel_packs
from aot.targets import TARGETS
from aot.schemas import aten_schema, family_header, has_kernel, parse, same_up_to_symint
from aot.variants import DTYPES

MANIFEST = "gems_manifest.json"


class _Output:
    """The generated files of one run, written only when their content changed (so that ninja
    rebuilds nothing when nothing changed)."""

    def __init__(self, folder: pathlib.Path):
        self.folder, self.names = folder, []
        folder.mkdir(parents=True, exist_ok=True)
        self.owned = (folder / MANIFEST).exists() or not any(folder.iterdir())

    def write(self, name: str, text: str | bytes):
        data = text.encode() if isinstance(text, str) else text
        path = self.folder / name
        self.names.append(name)
        if path.exists() and path.read_bytes() == data:
            return
        path.write_bytes(data)

    def remove_stale(self):
        """Removes the files a previous run wrote that this one did not (only in a folder that
        was empty or held a manifest, i.e. one this step made)."""
        if not self.owned:
            return
        for path in self.folder.iterdir():
            if path.is_file() and path.name not in self.names:
                path.unlink()


def _cpp_str(s: str) -> str:
    return json.dumps(s)


def declared_launch_params(grid) -> list:
    """The launch params of a grid none of whose points is built for the targets of this build
    (mm_tma on sm_80 alone): those of its first point on any target, so that the drivers' names
    for them exist whatever the targets."""
    from aot.compiler import TARGET_NAMES

    for point in grid.points():
        for arch in TARGET_NAMES:
            v = grid.make(point, arch)
            if v is not None:
                return list(v.launch_params)
    return []


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
                        "grid": grid.name,
                    }
                )
            if not params:
                params = declared_launch_params(grid)
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


def emit(out_dir: pathlib.Path, families, archs, results, triton_version: str, workers: int = 1,
         cache: pathlib.Path | None = None):
    """Writes the generated sources and packs into out_dir; returns the manifest. `cache` holds
    compressed chunks (default: the kernel cache)."""
    from aot.compiler import cache_dir

    out = _Output(out_dir)
    kernels, grid_tables = build_table(families, archs, results)

    flat = [(arch, k["grid"], cubin) for k in kernels for arch, cubin, _, _ in k["images"]]
    packs, placements = kernel_packs.build(flat, archs, workers, cache or cache_dir())
    images = []
    for k in kernels:
        k["first_image"] = len(images)
        for arch, cubin, meta, constexprs in k["images"]:
            params = [int(constexprs.get(p, 0)) for p in k.get("param_names", [])]
            images.append((arch, placements[len(images)], meta, params + [0] * (4 - len(params))))
    asm = ['  .section .rodata.gems_packs, "a"']
    for pack in packs:
        out.write(f"gems_pack_{TARGETS[pack.arch].tag}.bin", pack.data)
        asm += [f"  .globl gems_pack_{TARGETS[pack.arch].tag}", f"gems_pack_{TARGETS[pack.arch].tag}:",
                f'  .incbin "gems_pack_{TARGETS[pack.arch].tag}.bin"']
    out.write("gems_packs.S", "\n".join(asm + ['  .section .note.GNU-stack, "", @progbits', ""]))

    cubin_bytes = sum(len(cubin) for _, _, cubin in flat)
    header = [
        "// Generated by aot/codegen.py from the declarations in aot/family_*.py. Do not edit.",
        "#pragma once",
        "#include <c10/core/ScalarType.h>",
        "#include <cstdint>",
        '#include "runtime/kernels.h"',
        "",
        "namespace gems::gen {",
        f"constexpr int kNumKernels = {len(kernels)};",
        f"constexpr int kNumImages = {len(images)};",
        f"constexpr int kArchs[] = {{{', '.join(map(str, archs))}}};",
        f"constexpr int kNumArchs = {len(archs)};",
        "constexpr BuildTarget kTargets[] = {"
        + ", ".join(f"{{{a}, {_cpp_str(TARGETS[a].name)}, {_cpp_str(TARGETS[a].vendor)}}}" for a in archs) + "};",
        f"constexpr const char* kTritonVersion = {_cpp_str(triton_version)};",
        f"constexpr uint64_t kCubinBytes = {cubin_bytes};",
        f"constexpr uint64_t kPackBytes = {sum(len(p.data) for p in packs)};",
        f"constexpr int kNumChunks = {sum(len(p.chunks) for p in packs)};",
        "extern const KernelSpec kKernels[kNumKernels > 0 ? kNumKernels : 1];",
        "extern const KernelImage kImages[kNumImages > 0 ? kNumImages : 1];",
        "extern const packs::Pack kPacks[kNumArchs];  // in the order of kArchs",
        "extern const packs::Chunk kChunks[kNumChunks > 0 ? kNumChunks : 1];",
        "",
    ]
    for grid, ids, params in grid_tables:
        header += [_grid_header(grid, ids, params), ""]
    header.append("}  // namespace gems::gen")
    out.write("gems_kernels.h", "\n".join(header) + "\n")

    src = [
        "// Generated by aot/codegen.py. Do not edit.",
        '#include "gems_kernels.h"',
        "",
    ]
    src += [f"extern \"C\" const unsigned char gems_pack_{TARGETS[p.arch].tag}[];" for p in packs]
    src += [
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
    for arch, at, m, params in images:
        src.append(
            f"  {{{arch}, {_cpp_str(m['name'])}, {{{at.chunk}, {at.offset}, {at.size}, {at.crc32:#x}u}}, "
            f"{m['num_warps']}, {m['num_ctas']}, {m['shared']}, "
            f"{m['global_scratch_size']}, {m['global_scratch_align']}, {m['profile_scratch_size']}, "
            f"{m['profile_scratch_align']}, {str(bool(m['launch_pdl'])).lower()}, "
            f"{str(bool(m['launch_cooperative_grid'])).lower()}, {{{', '.join(map(str, params))}}}}},"
        )
    if not images:
        src.append("  {}")
    src += ["};", "const packs::Pack kPacks[kNumArchs] = {"]
    src += [f"  {{{p.arch}, gems_pack_{TARGETS[p.arch].tag}, {len(p.data)}, {p.first_chunk}, {len(p.chunks)}}}," for p in packs]
    src += ["};", "const packs::Chunk kChunks[kNumChunks > 0 ? kNumChunks : 1] = {"]
    src += [f"  {{{offset}, {size}, {raw}}}," for p in packs for offset, size, raw in p.chunks]
    if not flat:
        src.append("  {}")
    src += ["};", "}  // namespace gems::gen", ""]
    out.write("gems_kernels.cpp", "\n".join(src))

    out.write("gems_registration.cpp", registration_source(families))
    sources = ["gems_kernels.cpp", "gems_registration.cpp", "gems_packs.S"]
    for fam in families:
        out.write(fam.cpp_header, family_header(fam.module, fam.gems_ops, fam.aten_overrides))
        if fam.generated_sources:
            for name, text in fam.generated_sources().items():
                out.write(name, text)
                sources += [name] if name.endswith(".cpp") else []
    out.write("gems_sources.cmake", "\n".join([
        "# Generated by aot/codegen.py: what the AOT step generated, for CMakeLists.txt. Do not edit.",
        "set(GEMS_GENERATED_SOURCES",
        *[f"  ${{GEMS_GEN_DIR}}/{name}" for name in sources],
        ")",
        "set(GEMS_PACK_FILES",
        *[f"  ${{GEMS_GEN_DIR}}/gems_pack_{TARGETS[p.arch].tag}.bin" for p in packs],
        ")",
        "",
    ]))

    per_arch = {a: sum(1 for im in images if im[0] == a) for a in archs}
    manifest = {
        "triton_version": triton_version,
        "archs": list(archs),
        "kernels": len(kernels),
        "images_per_arch": {str(a): n for a, n in per_arch.items()},
        "cubin_bytes": cubin_bytes,
        "pack_bytes": sum(len(p.data) for p in packs),
        "packs": {
            str(p.arch): {"bytes": len(p.data), "chunks": len(p.chunks), "first_chunk": p.first_chunk,
                          "cubin_bytes": sum(raw for _, _, raw in p.chunks)}
            for p in packs
        },
        "gems_ops": [o.name for f in families for o in f.gems_ops],
        "aten_overrides": {o.name: f.module.split("_", 1)[1] for f in families for o in f.aten_overrides},
        "variants": [
            {
                "symbol": k["symbol"],
                "signature": k["signature"],
                "images": [
                    {"arch": a, "shared": m["shared"], "num_warps": m["num_warps"], "bytes": len(c),
                     "chunk": placements[k["first_image"] + i].chunk, "sha256": hashlib.sha256(c).hexdigest()}
                    for i, (a, c, m, _) in enumerate(k["images"])
                ],
            }
            for k in kernels
        ],
    }
    out.write(MANIFEST, json.dumps(manifest, indent=1) + "\n")
    out.remove_stale()
    return manifest


def _check_aten_fake(op) -> None:
    """A meta_from_aten op's aten op takes the same arguments and has a fake implementation."""
    if not same_up_to_symint(parse(op.schema), aten_schema(op.name)):
        raise ValueError(f"gems::{op.name} declares meta_from_aten, but its schema is not aten's: "
                         f"{op.schema} against {aten_schema(op.name)}")
    if not any(has_kernel(op.name, k) for k in ("Meta", "CompositeImplicitAutograd")):
        raise ValueError(f"gems::{op.name} declares meta_from_aten, but aten::{op.name} has no fake "
                         "implementation in this torch: give it a C++ Meta function")


def registration_source(families) -> str:
    bench_cases = [case for f in families if f.bench_cases for case in f.bench_cases()]
    aten_fakes = [o for f in families for o in f.gems_ops if o.meta_from_aten]
    for o in aten_fakes:
        _check_aten_fake(o)
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
              "// The gems ops whose fake implementation is the aten op of their name (GemsOp.meta_from_aten).",
              f'constexpr const char* kAtenFakes = "{" ".join(o.name for o in aten_fakes)}";',
              "}  // namespace", "", "TORCH_LIBRARY(gems, m) {"]
    lines += [f"  m.def({_cpp_str(o.schema)});" for f in families for o in f.gems_ops]
    lines.append('  m.def("_bench_cases() -> str", []() -> std::string { return kBenchCases; });')
    lines.append('  m.def("_aten_fakes() -> str", []() -> std::string { return kAtenFakes; });')
    lines += ["}", "", "TORCH_LIBRARY_IMPL(gems, CUDA, m) {"]
    lines += [f"  m.impl({_cpp_str(o.name)}, TORCH_FN(gems::cuda::{o.cpp}));" for f in families for o in f.gems_ops]
    lines += ["}", "", "TORCH_LIBRARY_IMPL(gems, Meta, m) {"]
    lines += [f"  m.impl({_cpp_str(o.name)}, TORCH_FN(gems::meta::{o.cpp}));" for f in families for o in f.gems_ops
              if not o.meta_from_aten]
    lines += ["}", "", "namespace gems {", "namespace {"]
    overrides = [(f, o) for f in families for o in f.aten_overrides]
    for _, o in overrides:
        lines.append(
            f"void install_{o.cpp}(torch::Library& m) {{ m.impl({_cpp_str(o.name)}, TORCH_FN(aten_impl::{o.cpp})); }}"
        )
    lines += ["}  // namespace", "", "const AtenOverride kAtenOverrides[] = {"]
    for f, o in overrides:
        family = f.module.split("_", 1)[1]
        lines.append(f"  {{{_cpp_str(o.name)}, {_cpp_str(family)}, {str(o.opt_in).lower()}, &install_{o.cpp}}},")
    lines += ["};", f"const int kNumAtenOverrides = {len(overrides)};", "}  // namespace gems", ""]
    return "\n".join(lines)
