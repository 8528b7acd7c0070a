"""Kernel packs: the C++ decoder (csrc/runtime/lzma.h, packs.h) against Python's lzma under the
address and undefined-behaviour sanitizers, with corrupt and truncated input."""

import lzma
import os
import random
import shutil
import subprocess
import zlib

import pytest

from conftest import ROOT


def cubin_like(rng: random.Random, size: int) -> bytes:
    """Bytes shaped like SASS: 16-byte instructions drawn from a small vocabulary, so the
    encoder emits literals, matches and repeated matches, as on real cubins."""
    vocabulary = [rng.randbytes(16) for _ in range(64)]
    body = b"".join(rng.choice(vocabulary) if rng.random() < 0.8 else rng.randbytes(16) for _ in range(size // 16))
    return b"\x7fELF" + body[4:] + rng.randbytes(size % 16)


def alone(data: bytes, preset=6, **props) -> bytes:
    """The .lzma format the packs use, with other encoder settings on demand."""
    filters = [{"id": lzma.FILTER_LZMA1, "preset": preset, **props}]
    return lzma.compress(data, format=lzma.FORMAT_ALONE, filters=filters)


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
