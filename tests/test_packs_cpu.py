"""Kernel packs: the build side (aot/packs.py: chunks per target and grid, the compression cache,
the generated embed), the C++ decoder (csrc/runtime/lzma.h, packs.h) against Python's lzma under
the address and undefined-behaviour sanitizers, with corrupt and truncated input, and the built
extension's packs against the build's manifest."""

import hashlib
import json
import lzma
import os
import pathlib
import random
import shutil
import subprocess
import sys
import zlib

import pytest
import torch

from aot import codegen, compiler, ops, packs
from aot.variants import KernelGrid, Variant
from conftest import ROOT

BUILD = pathlib.Path(os.environ.get("GEMS_AOT_BUILD_DIR") or ROOT / "build")


def cubin_like(rng: random.Random, size: int) -> bytes:
    """Bytes shaped like SASS: 16-byte instructions drawn from a small vocabulary, so the
    encoder emits literals, matches and repeated matches, as on real cubins."""
    vocabulary = [rng.randbytes(16) for _ in range(64)]
    body = b"".join(rng.choice(vocabulary) if rng.random() < 0.8 else rng.randbytes(16) for _ in range(size // 16))
    return b"\x7fELF" + body[4:] + rng.randbytes(size % 16)


def alone(data: bytes, preset=6, **props) -> bytes:
    """The .lzma format the packs use (aot/packs.py), with other encoder settings on demand."""
    filters = [{"id": lzma.FILTER_LZMA1, "preset": preset, **props}]
    return lzma.compress(data, format=lzma.FORMAT_ALONE, filters=filters)


# ---- the build side ---------------------------------------------------------------------------


def test_chunks_hold_one_target_and_one_grid_up_to_the_cap():
    small, big = packs.CHUNK_BYTES // 4, packs.CHUNK_BYTES + 1
    images = [(90, "a", b"x" * small)] * 5 + [(80, "a", b"x" * small), (90, "b", b"x" * big), (90, "b", b"x" * small),
                                                (80, "a", b"x" * small)]
    # sm_80 first; a grid change or the cap ends a chunk; an image larger than the cap is alone.
    assert packs.plan(images) == [[5, 8], [0, 1, 2, 3], [4], [6], [7]]


def test_packs_hold_only_their_targets_images(tmp_path):
    """Per-target isolation: each pack's chunks decode to exactly its target's images, in order,
    and every placement points into a chunk of its own target's pack."""
    rng = random.Random(1)
    images = [(arch, f"g{i % 3}", cubin_like(rng, rng.randrange(2000, 90000))) for i in range(40)
              for arch in (80, 90, 100) if (i + arch) % 4]
    built, placements = packs.build(images, (80, 90, 100), workers=2, cache=tmp_path)
    assert [p.arch for p in built] == [80, 90, 100]
    for pack in built:
        decoded = [lzma.decompress(pack.data[offset:offset + size]) for offset, size, _ in pack.chunks]
        assert [len(d) for d in decoded] == [raw for _, _, raw in pack.chunks]
        assert b"".join(decoded) == b"".join(cubin for arch, _, cubin in images if arch == pack.arch)
        assert sum(size for _, size, _ in pack.chunks) == len(pack.data)
        own = range(pack.first_chunk, pack.first_chunk + len(pack.chunks))
        for (arch, _, cubin), at in zip(images, placements):
            if arch == pack.arch:
                assert at.chunk in own
                assert decoded[at.chunk - pack.first_chunk][at.offset:at.offset + at.size] == cubin
                assert at.crc32 == zlib.crc32(cubin)


def test_compressed_chunks_are_cached_per_grid(tmp_path, capfd):
    rng = random.Random(2)
    images = [(90, grid, cubin_like(rng, 50000)) for grid in ("a", "b", "c") for _ in range(8)]
    chunks = len(packs.plan(images))
    first, _ = packs.build(images, (90,), workers=1, cache=tmp_path)
    assert f"{chunks} chunks, {chunks} compressed," in capfd.readouterr().err
    again, _ = packs.build(images, (90,), workers=1, cache=tmp_path)
    assert ", 0 compressed," in capfd.readouterr().err and again[0].data == first[0].data
    # An image that grows changes the chunks of its grid, and only those are compressed again.
    images[9] = (90, "b", cubin_like(rng, 120000))
    packs.build(images, (90,), workers=1, cache=tmp_path)
    grid_b_chunks = len([c for c in packs.plan(images) if images[c[0]][1] == "b"])
    assert f", {grid_b_chunks} compressed," in capfd.readouterr().err


def test_equal_chunks_compress_concurrently(tmp_path):
    """Grids with identical images make identical chunks: threads compressing them at once each
    write their own temporary file before the cache entry appears (seen with 16 workers)."""
    rng = random.Random(4)
    cubin = cubin_like(rng, 20000)
    images = [(90, f"grid{i}", cubin) for i in range(128)]
    built, placements = packs.build(images, (90,), workers=16, cache=tmp_path)
    assert len(placements) == 128 and not list((tmp_path / "packs").glob("*.tmp"))
    assert len(list((tmp_path / "packs").glob("*.lzma"))) == 1


def _demo_family(points):
    def make(point, arch):
        return Variant("kernels.demo:k", (("x", "*fp32"), ("BLOCK", "constexpr")), (("BLOCK", 128),),
                       launch_params=("BLOCK",))

    grid = KernelGrid("demo", (("op", points),), make)
    return ops.Family("aot.family_demo", (grid,), (), (), ops.header_name("aot.family_demo"))


def _emit(folder, cache, points=("add", "mul"), archs=(80, 90)):
    rng = random.Random(3)
    meta = {f: 0 for f in compiler.METADATA_FIELDS} | {"name": "k", "num_warps": 4, "num_ctas": 1,
                                                         "triton_version": "3.8.0"}
    results = {(f"demo_{p}", a): (cubin_like(rng, 40000), meta) for p in points for a in archs}
    return codegen.emit(folder, [_demo_family(points)], archs, results, "3.8.0", cache=cache), results


def test_emit_embeds_packs_by_file_name(tmp_path):
    """The generated sources name the packs relative to the generated folder (the compiler finds
    them through its -I), so no absolute path of the build reaches the library."""
    manifest, results = _emit(tmp_path / "gen", tmp_path / "cache")
    gen = tmp_path / "gen"
    asm = (gen / "gems_packs.S").read_text()
    assert '.incbin "gems_pack_sm80.bin"' in asm and '.incbin "gems_pack_sm90a.bin"' in asm
    for path in gen.iterdir():
        if path.suffix in (".S", ".cpp", ".h", ".cmake"):
            assert str(tmp_path) not in path.read_text(), path.name
    listed = (gen / "gems_sources.cmake").read_text()
    assert "${GEMS_GEN_DIR}/gems_packs.S" in listed and "${GEMS_GEN_DIR}/gems_pack_sm90a.bin" in listed
    table = (gen / "gems_kernels.cpp").read_text()
    assert "{80, gems_pack_sm80, " in table and "{90, gems_pack_sm90a, " in table
    images = [im for v in manifest["variants"] for im in v["images"]]
    assert [im["sha256"] for im in images] == [hashlib.sha256(results[(v["symbol"], im["arch"])][0]).hexdigest()
                                               for v in manifest["variants"] for im in v["images"]]


def test_emit_removes_what_it_no_longer_generates(tmp_path):
    gen = tmp_path / "gen"
    _emit(gen, tmp_path / "cache", archs=(80, 90))
    (gen / "family_gone_ops.cpp").write_text("// left by a family that no longer exists\n")
    _emit(gen, tmp_path / "cache", archs=(90,))
    assert not (gen / "family_gone_ops.cpp").exists() and not (gen / "gems_pack_sm80.bin").exists()
    assert "family_gone" not in (gen / "gems_sources.cmake").read_text()
    # A folder the AOT step did not make (no manifest, not empty) is left alone.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    _emit(foreign, tmp_path / "cache")
    assert (foreign / "notes.txt").exists()


# ---- the C++ decoder --------------------------------------------------------------------------


class Harness:
    """tests/packs_harness.cpp, built with the sanitizers: any read or write outside a buffer
    aborts it, and the batch then fails."""

    def __init__(self, exe, folder):
        self.exe, self.folder, self.count = exe, folder, 0

    def file(self, data: bytes) -> str:
        self.count += 1
        path = self.folder / f"f{self.count}"
        path.write_bytes(data)
        return str(path)

    def output(self) -> str:
        self.count += 1
        return str(self.folder / f"f{self.count}")

    def run(self, commands: list) -> list:
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1")
        r = subprocess.run([str(self.exe)], input="\n".join(commands) + "\n", capture_output=True, text=True,
                           env=env, timeout=600)
        assert r.returncode == 0, r.stderr[-4000:]
        lines = r.stdout.splitlines()
        assert len(lines) == len(commands)
        return lines

    def decode(self, cases: list) -> list:
        """cases: [(stream, size)] -> the decoded bytes, or the error line, per case."""
        outs = [self.output() for _ in cases]
        lines = self.run([f"decode {self.file(stream)} {size} {out}" for (stream, size), out in zip(cases, outs)])
        return [open(out, "rb").read() if line == "ok" else line for line, out in zip(lines, outs)]


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    folder = tmp_path_factory.mktemp("packs")
    sources = [ROOT / "tests" / "packs_harness.cpp", ROOT / "csrc" / "runtime" / "lzma.cpp",
               ROOT / "csrc" / "runtime" / "packs.cpp"]
    subprocess.run([cxx, "-std=c++20", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    f"-I{ROOT / 'csrc'}", "-o", str(folder / "harness"), *map(str, sources)], check=True)
    return Harness(folder / "harness", folder)


def test_crc32_is_zlibs(harness):
    rng = random.Random(4)
    data = [b"", b"a", rng.randbytes(1000), rng.randbytes(65537)]
    assert harness.run([f"crc {harness.file(d)}" for d in data]) == [str(zlib.crc32(d)) for d in data]


def test_decoder_matches_pythons_lzma(harness):
    """Every encoder setting that changes the stream (presets, extreme mode, literal context and
    position bits) on data with and without structure, decoded whole and as prefixes."""
    rng = random.Random(5)
    payloads = [b"", b"a", rng.randbytes(20000), bytes(300000), b"gems-aot kernel packs " * 5000,
                cubin_like(rng, 200000)]
    settings = [dict(preset=0), dict(preset=1), dict(), dict(preset=9 | lzma.PRESET_EXTREME),
                dict(lc=0, lp=0, pb=0), dict(lc=1, lp=3, pb=4), dict(lc=4, lp=0, pb=4), dict(lc=0, lp=4, pb=1),
                dict(dict_size=4096)]
    cases = []
    for data in payloads:
        for s in settings:
            stream = alone(data, **s)
            cases += [(stream, data, n) for n in {len(data), len(data) // 3, min(len(data), 1)}]
    got = harness.decode([(stream, n) for stream, _, n in cases])
    assert [g == data[:n] for g, (_, data, n) in zip(got, cases)] == [True] * len(cases)


def test_decoder_reports_truncated_and_invalid_streams(harness):
    data = cubin_like(random.Random(6), 64000)
    stream = alone(data)
    header = bytearray(stream)
    header[0] = 225
    lc_lp = bytearray(stream)
    lc_lp[0] = (2 * 5 + 1) * 9 + 4  # lc 4, lp 1
    short = bytearray(stream)
    short[5:13] = (1000).to_bytes(8, "little")  # declares 1000 bytes
    start = bytearray(stream)
    start[13] = 1  # the range coder's first byte must be 0
    cases = [(stream[:n], len(data)) for n in (0, 5, 12, 13, 16, 18, len(stream) // 4, len(stream) // 2)]
    cases += [(bytes(header), 10), (bytes(lc_lp), 10), (bytes(short), 1001), (bytes(start), 10)]
    got = harness.decode(cases)
    assert [g.split(":")[0] for g in got] == ["error truncated"] * 8 + [
        "error invalid .lzma header", "error unsupported .lzma properties", "error the stream declares fewer bytes than requested",
        "error corrupt"]
    # Cut anywhere, the stream decodes to the right bytes or says it is truncated.
    cut = harness.decode([(stream[:n], len(data)) for n in range(len(stream) - 40, len(stream))])
    assert all(g == data or g.startswith("error truncated") for g in cut)


def test_decoder_survives_corrupt_streams(harness):
    """Flipped bytes anywhere in the stream: the decoder returns (an error, or bytes the CRC check
    then rejects) and never reads or writes outside its buffers."""
    rng = random.Random(7)
    data = cubin_like(rng, 100000)
    stream = alone(data)
    cases = []
    for _ in range(400):
        bad = bytearray(stream)
        for _ in range(rng.choice((1, 1, 3))):
            bad[rng.randrange(13, len(bad))] ^= 1 << rng.randrange(8)
        cases.append((bytes(bad), len(data)))
    got = harness.decode(cases)
    assert sum(isinstance(g, str) for g in got) > 100  # most corruptions are caught by the decoder itself


def test_unpack_checks_placement_and_crc(harness):
    rng = random.Random(8)
    cubins = [cubin_like(rng, n) for n in (30000, 12345, 70000)]
    raw = b"".join(cubins)
    stream = alone(raw)
    pack = harness.file(b"junk" + stream + b"more")
    chunk = f"{pack} 4 {len(stream)} {len(raw)}"

    def unpack(chunk_desc, index, offset, size, crc):
        out = harness.output()
        return f"unpack {chunk_desc} {index} {offset} {size} {crc} {out}", out

    good = [unpack(chunk, 0, sum(map(len, cubins[:i])), len(c), zlib.crc32(c)) for i, c in enumerate(cubins)]
    assert harness.run([cmd for cmd, _ in good]) == ["ok"] * 3
    assert [open(out, "rb").read() for _, out in good] == cubins
    c = cubins[1]
    bad = [
        unpack(chunk, 0, 30000, len(c), zlib.crc32(c) ^ 1)[0],  # another CRC
        unpack(chunk, 0, len(raw) - 10, 11, 0)[0],  # past the chunk's end
        unpack(chunk, 1, 30000, len(c), zlib.crc32(c))[0],  # a chunk of another pack
        unpack(f"{pack} 4 {len(stream) + 5} {len(raw)}", 0, 0, 10, 0)[0],  # a chunk past the pack's end
        unpack(f"{harness.file(stream[:len(stream) // 2])} 0 {len(stream) // 2} {len(raw)}", 0, len(raw) - 70000,
               70000, zlib.crc32(cubins[2]))[0],  # a truncated pack (the last image is in the lost half)
    ]
    assert [line.split(":")[0] for line in harness.run(bad)] == [
        "error chunk 0 of the sm_90 pack", "error the image lies outside chunk 0", "error chunk 1 is not in the sm_90 pack",
        "error chunk 0 lies outside its pack", "error chunk 0 of the sm_90 pack"]
    assert "CRC-32" in harness.run(bad[:1])[0] and "truncated" in harness.run(bad[-1:])[0]


def test_unpack_never_returns_wrong_bytes(harness):
    """Whatever is corrupted in the chunk, the image comes back exact or not at all."""
    rng = random.Random(9)
    cubin = cubin_like(rng, 80000)
    stream = alone(cubin_like(rng, 20000) + cubin)
    commands, outs = [], []
    for _ in range(300):
        bad = bytearray(stream)
        bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
        outs.append(harness.output())
        commands.append(f"unpack {harness.file(bytes(bad))} 0 {len(bad)} {100000} 0 20000 {len(cubin)} "
                        f"{zlib.crc32(cubin)} {outs[-1]}")
    for line, out in zip(harness.run(commands), outs):
        assert line.startswith("error") or open(out, "rb").read() == cubin


# ---- the built extension ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifest():
    """The manifest of the build the extension came from (skipped without one, e.g. for an
    installed wheel)."""
    import gems_aot

    path = BUILD / "aot" / codegen.MANIFEST
    if not path.exists():
        pytest.skip(f"no build manifest at {path}")
    data = json.loads(path.read_text())
    info = gems_aot.info()
    if (data["kernels"], data["pack_bytes"]) != (info["kernels"], info["pack_bytes"]):
        pytest.skip(f"{path} describes another build than {gems_aot.__file__}")
    return data


def test_every_image_unpacks_to_the_compilers_cubin(manifest):
    images = [im for v in manifest["variants"] for im in v["images"]]
    for index, im in enumerate(images):
        cubin = torch.ops.gems._unpack_image(index).numpy().tobytes()
        assert hashlib.sha256(cubin).hexdigest() == im["sha256"], (index, im)
    with pytest.raises(RuntimeError, match="out of range"):
        torch.ops.gems._unpack_image(len(images))


def test_a_kernel_reads_only_its_targets_pack(manifest):
    """In a fresh process, decoding one image touches its own target's pack, and decodes at most
    its chunk (lazy per image, not the whole pack)."""
    images = [im for v in manifest["variants"] for im in v["images"]]
    for arch in manifest["archs"]:
        index, im = next((i, im) for i, im in enumerate(images) if im["arch"] == arch)
        code = ("import gems_aot, torch, json; "
                f"torch.ops.gems._unpack_image({index}); print(json.dumps(gems_aot.info()['packs_used']))")
        used = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                         check=True).stdout)
        assert len(used) == len(manifest["archs"])
        for target, u in used.items():
            if target == compiler.TARGET_NAMES[arch]:
                assert u["images"] == 1 and im["bytes"] <= u["decoded_bytes"] <= max(packs.CHUNK_BYTES, im["bytes"])
            else:
                assert u == {"images": 0, "decoded_bytes": 0}, target
