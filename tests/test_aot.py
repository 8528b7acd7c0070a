"""The AOT compiler: declarations, compile for every target, the cache, the generated C++."""

import json
import re
import subprocess
import sys

import pytest
import triton

from aot import codegen, compiler, ops, schemas
from aot import targets
from aot.variants import KernelGrid, Variant
from conftest import ROOT

TARGETS = (80, 90, 100)


@pytest.fixture(scope="module")
def families():
    return ops.families()


def test_declarations_are_consistent(families):
    assert [f.module for f in families] == list(ops.FAMILIES)
    for fam in families:
        assert fam.grids and fam.cpp_header == f"gems_{fam.module.removeprefix('aot.family_')}_ops.h"
        for grid in fam.grids:
            covered = 0
            for point in grid.points():
                per_arch = [grid.make(point, arch) for arch in TARGETS]
                built = [v for v in per_arch if v is not None]
                covered += bool(built)
                for v in built:
                    # Every parameter of the jit function is declared, in order.
                    assert [n for n, _ in v.signature] == v.jit_function().arg_names, grid.symbol(point)
                # The driver passes one argument list per point, whatever kernel a target compiles.
                assert len({tuple(t for _, t in v.runtime_args) for v in built}) <= 1, grid.symbol(point)
            assert covered, grid.name


def test_variant_rejects_bad_declarations():
    with pytest.raises(ValueError, match="constexprs"):
        Variant(kernel="k:f", signature=(("x", "*fp32"), ("B", "constexpr")), constexprs=())
    with pytest.raises(ValueError, match="divisibility"):
        Variant(kernel="k:f", signature=(("x", "*fp32"),), divisible16=("y",))
    with pytest.raises(ValueError, match="launch param"):
        Variant(kernel="k:f", signature=(("x", "*fp32"),), launch_params=("x",))


def test_parse_archs():
    assert compiler.parse_archs("90") == (90,)
    assert compiler.parse_archs("100, 80,90,90") == (80, 90, 100)
    assert compiler.parse_archs("sm_90a,gfx942,950") == (90, 942, 950)
    for bad in ("", "75", "90,foo", "gfx90a", "sm_90"):
        with pytest.raises(ValueError):
            compiler.parse_archs(bad)


def _pointwise_variant(point, arch=90):
    """A variant of a generated pointwise op: point = {op, dtype, form, layout}."""
    grid = next(g for f in ops.families() for g in f.grids if g.name == f"pw_{point['op']}")
    return grid.make({k: v for k, v in point.items() if k != "op"}, arch)


@pytest.mark.parametrize("arch", TARGETS)
def test_compile_sample_for_every_target(arch):
    point = {"op": "add", "dtype": "bf16", "form": "tt", "layout": "contig64"}
    cubin, meta = compiler.compile_variant(_pointwise_variant(point, arch), arch)
    assert cubin[:4] == b"\x7fELF"
    assert meta["name"] == "add_contig"
    assert meta["num_warps"] == 4 and meta["num_ctas"] == 1  # a bf16 contiguous kernel: 2048 x 4 warps
    assert meta["shared"] >= 0 and meta["global_scratch_size"] == 0
    assert meta["launch_pdl"] is False and meta["launch_cooperative_grid"] is False
    assert meta["triton_version"] == triton.__version__
    # The cubin is for the requested target (sm_90a / sm_100a are the arch-specific flavours).
    assert f"sm_{arch}".encode() in cubin


def test_cache_skips_unchanged_variants(tmp_path):
    points = [
        {"op": "mul", "dtype": "fp32", "form": "tt", "layout": "contig"},
        {"op": "sub", "dtype": "i64", "form": "st", "layout": "strided3"},
    ]
    jobs = [compiler.Job(f"j{i}", _pointwise_variant(p), 90) for i, p in enumerate(points)]
    first, compiled = compiler.compile_all(jobs, workers=2, cache=tmp_path)
    assert compiled == 2 and len(list(tmp_path.glob("*.cubin"))) == 2
    second, compiled = compiler.compile_all(jobs, workers=2, cache=tmp_path)
    assert compiled == 0
    assert second == first
    # A changed option is a different cache entry.
    v = jobs[0].variant
    changed = Variant(v.kernel, v.signature, v.constexprs, v.divisible16, num_warps=4, launch_params=v.launch_params)
    _, compiled = compiler.compile_all([compiler.Job("j0", changed, 90)], workers=1, cache=tmp_path)
    assert compiled == 1


def test_compile_errors_name_the_variant(tmp_path):
    good = _pointwise_variant({"op": "relu", "dtype": "fp32", "form": "t", "layout": "contig"})
    bad = Variant(good.kernel, good.signature, (("S0", False), ("INDEX64", False), ("BLOCK", 1000)))  # not 2**k
    with pytest.raises(RuntimeError, match="sm_90a broken_variant"):
        compiler.compile_all([compiler.Job("broken_variant", bad, 90), compiler.Job("broken_variant", bad, 90)],
                             workers=2, cache=tmp_path)


def test_codegen_tables(tmp_path):
    def make(point, arch):
        if point["dtype"] == "i32" or (point["op"] == "mul" and arch == 80):
            return None
        return _pointwise_variant({"op": point["op"], "dtype": point["dtype"], "form": "tt", "layout": "contig"},
                                  arch)

    grid = KernelGrid("demo", (("op", ("add", "mul")), ("dtype", ("fp32", "i32"))), make)
    fam = ops.Family("aot.family_demo", (grid,), (ops.GemsOp("demo(Tensor a) -> Tensor"),),
                     (ops.AtenOverride("add.Tensor"),), ops.header_name("aot.family_demo"))
    jobs = codegen.jobs_for([fam], (80, 90))
    assert sorted((j.symbol, j.arch) for j in jobs) == [("demo_add_fp32", 80), ("demo_add_fp32", 90),
                                                         ("demo_mul_fp32", 90)]
    results, _ = compiler.compile_all(jobs, workers=1, cache=tmp_path / "cache")
    manifest = codegen.emit(tmp_path / "gen", [fam], (80, 90), results, triton.__version__, cache=tmp_path / "cache")
    assert manifest["kernels"] == 2 and manifest["images_per_arch"] == {"80": 1, "90": 2}
    header = (tmp_path / "gen" / "gems_kernels.h").read_text()
    assert "namespace demo {" in header
    assert "enum : int { op_add = 0, op_mul = 1 };" in header
    assert "case c10::ScalarType::Int: return 1;" in header
    assert "kTable[4] = {0, -1, 1, -1}" in header
    assert "constexpr int kParam_BLOCK = 0;" in header
    table = (tmp_path / "gen" / "gems_kernels.cpp").read_text()
    assert '{"demo_mul_fp32", "*fp32,*fp32,*fp32,i32,fp32,fp32", 6, ' in table
    assert '{90, "mul_contig", {' in table  # the entry point, then the place in a pack, per image
    reg = (tmp_path / "gen" / "gems_registration.cpp").read_text()
    assert 'm.def("demo(Tensor a) -> Tensor");' in reg
    assert 'TORCH_FN(gems::meta::demo)' in reg and 'TORCH_FN(aten_impl::add_Tensor)' in reg
    assert '#include "gems_demo_ops.h"' in reg
    prototypes = (tmp_path / "gen" / "gems_demo_ops.h").read_text()
    assert "at::Tensor demo(const at::Tensor& a);" in prototypes
    assert "at::Tensor add_Tensor(const at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha);" in prototypes
    packed = {a: (tmp_path / "gen" / f"gems_pack_{targets.TARGETS[a].tag}.bin").read_bytes() for a in (80, 90)}
    assert manifest["pack_bytes"] == sum(map(len, packed.values())) == sum(p["bytes"] for p in manifest["packs"].values())
    assert manifest["cubin_bytes"] == sum(len(cubin) for cubin, _ in results.values())
    assert json.loads((tmp_path / "gen" / "gems_manifest.json").read_text())["aten_overrides"] == {
        "add.Tensor": "demo"}
    # Unchanged inputs leave the files untouched (ninja then rebuilds nothing).
    stamp = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "gen").iterdir()}
    codegen.emit(tmp_path / "gen", [fam], (80, 90), results, triton.__version__, cache=tmp_path / "cache")
    assert stamp == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "gen").iterdir()}


def test_family_headers_declare_what_the_schemas_imply(families):
    """Every family's prototypes come from its declarations (aot/schemas.py): the dispatcher's
    argument order (out= last) and C++ types, for gems ops and aten overrides alike."""
    gemm = next(f for f in families if f.module == "aot.family_gemm")
    header = schemas.family_header(gemm.module, gemm.gems_ops, gemm.aten_overrides)
    assert ("at::Tensor& addmm_out(const at::Tensor& self, const at::Tensor& mat1, const at::Tensor& mat2, "
            "const at::Scalar& beta, const at::Scalar& alpha, at::Tensor& out);") in header
    # cuda and aten_impl: no meta (meta_from_aten, the aten op is its fake implementation)
    assert header.count("at::Tensor mm(const at::Tensor& self, const at::Tensor& mat2);") == 2
    reduce = next(f for f in families if f.module == "aot.family_reduce")
    header = schemas.family_header(reduce.module, reduce.gems_ops, reduce.aten_overrides)
    assert ("at::Tensor& sum_IntList_out(const at::Tensor& self, at::OptionalIntArrayRef dim, bool keepdim, "
            "std::optional<at::ScalarType> dtype, at::Tensor& out);") in header
    with pytest.raises(ValueError, match="has no C\\+\\+ type"):
        schemas.cpp_signature(schemas.parse("f(Tensor?[] xs) -> Tensor"))


def test_build_names_what_it_is_missing(tmp_path):
    """setup.py stops with the missing tools and how to get them (no cmake or ninja on PATH here),
    not with a traceback from deep inside the build."""
    env = {"HOME": str(tmp_path), "PATH": str(tmp_path)}
    run = subprocess.run([sys.executable, "setup.py", "build_ext", "--build-lib", str(tmp_path / "lib"),
                          "--build-temp", str(tmp_path / "tmp")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode != 0
    assert "gems-aot: the build needs ninja (pip install ninja), cmake (pip install cmake)" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_param_without_a_test_value_names_itself():
    """A param over an argument with no test value fails with the overload and the place to add
    its value, not a bare StopIteration."""
    import dataclasses

    from aot import family_pointwise
    from aot.pointwise import calls

    ov = next(o for o in family_pointwise.OVERLOADS if o.params)
    renamed = dataclasses.replace(ov, params=("unknown_keyword",))
    with pytest.raises(KeyError, match=f"{re.escape(ov.aten)}: no test value .* VALUES"):
        calls.call_kwargs(renamed, ov.op, "fp32")


def test_launch_params_exist_when_no_target_builds_a_grid():
    """A grid with images on sm_90a only (the TMA GEMMs) still gets its launch-param names in a
    build for sm_80 alone: the drivers name them whatever the targets."""
    def make(point, arch):
        if arch != 90:
            return None
        return _pointwise_variant({"op": point["op"], "dtype": "fp32", "form": "tt", "layout": "contig"}, arch)

    grid = KernelGrid("hopper_only", (("op", ("add", "mul")),), make)
    fam = ops.Family("aot.family_demo", (grid,), (), (), ops.header_name("aot.family_demo"))
    kernels, tables = codegen.build_table([fam], (80,), {})
    assert kernels == [] and tables[0][1] == [-1, -1]
    assert tables[0][2] == list(make({"op": "add"}, 90).launch_params) != []
