"""AMD targets: every kernel the families build for gfx942 compiles to a code object here (no GPU,
no ROCm), the families leave out exactly the kernels build_tools/vendors.py lists, and a build
with an AMD target packs its images and names its vendor for the runtime."""

import struct
import sys

import pytest

from aot import codegen, compiler, ops, targets
from conftest import ROOT

sys.path.insert(0, str(ROOT / "build_tools"))
import vendors  # noqa: E402

EM_AMDGPU = 224  # the ELF machine of an AMDGPU code object


def kernels_by_target(arch):
    """{kernel: the first variant built for target arch}, over every family's grids."""
    found = {}
    for family in ops.families():
        for grid in family.grids:
            for point in grid.points():
                v = grid.make(point, arch)
                if v is not None:
                    found.setdefault(v.kernel, (grid.name, point, v))
    return found


@pytest.fixture(scope="module")
def amd_kernels():
    return kernels_by_target(942)


def test_vendor_table_matches_the_targets():
    for vendor in vendors.VENDORS:
        named = [t for t in targets.TARGETS.values() if t.name in vendor.targets]
        assert len(named) == len(vendor.targets) and {t.vendor for t in named} == {vendor.name}
        assert {t.backend for t in named} == {vendor.backend}
    assert {t.vendor for t in targets.TARGETS.values()} == {v.name for v in vendors.VENDORS}


def test_amd_builds_every_kernel_but_the_listed_ones(amd_kernels):
    nvidia = set()
    for arch in targets.CUDA_IDS:
        nvidia |= set(kernels_by_target(arch))
    assert nvidia - set(amd_kernels) == set(vendors.AMD_NOT_BUILT)
    assert set(amd_kernels) <= nvidia


def test_every_amd_kernel_compiles_for_gfx942(amd_kernels):
    jobs = [compiler.Job(f"{grid}:{v.kernel}", v, 942) for grid, _, v in amd_kernels.values()]
    results, _ = compiler.compile_all(jobs, workers=2)
    for job in jobs:
        image, meta = results[(job.symbol, 942)]
        # An ELF code object for AMDGPU, with Triton's launch metadata.
        assert image[:4] == b"\x7fELF" and struct.unpack_from("<H", image, 18)[0] == EM_AMDGPU, job.symbol
        assert meta["num_warps"] == job.variant.num_warps and not meta["launch_pdl"]


def test_gfx950_compiles(amd_kernels):
    sample = [v for _, _, v in amd_kernels.values() if v.kernel.startswith(("kernels.reduce", "kernels.gemm:"))]
    jobs = [compiler.Job(f"gfx950_{v.kernel}", v, 950) for v in sample]
    results, _ = compiler.compile_all(jobs, workers=1)
    assert all(struct.unpack_from("<H", results[(j.symbol, 950)][0], 18)[0] == EM_AMDGPU for j in jobs)


def test_a_build_with_an_amd_target_packs_it(tmp_path, amd_kernels):
    """The AMD images go into their own pack, and the kernel table names the target's vendor (the
    runtime reads it to leave those images alone)."""
    families = ops.families(["aot.family_reduce"])
    jobs = codegen.jobs_for(families, (90, 942))
    results, _ = compiler.compile_all(jobs, workers=2)
    manifest = codegen.emit(tmp_path, families, (90, 942), results, "test")
    assert manifest["images_per_arch"]["942"] == manifest["images_per_arch"]["90"] > 0
    assert (tmp_path / "gems_pack_gfx942.bin").stat().st_size > 0
    header = (tmp_path / "gems_kernels.h").read_text()
    assert 'constexpr BuildTarget kTargets[] = {{90, "sm_90a", "nvidia"}, {942, "gfx942", "amd"}};' in header


def test_parse_names_and_ids():
    assert targets.parse("gfx942, sm_90a") == (90, 942)
    assert {targets.TARGETS[i].binary for i in targets.HIP_IDS} == {"hsaco"}
    with pytest.raises(ValueError, match="gfx942"):
        targets.parse("gfx1100")
