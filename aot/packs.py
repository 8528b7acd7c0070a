"""Kernel packs: each target's cubins, LZMA-compressed in chunks (read by csrc/runtime/packs.h).

A chunk is a run of consecutive images of one target and one grid, at most CHUNK_BYTES
uncompressed (a larger image is a chunk of its own), compressed into one .lzma stream. The
runtime decodes an image on its first use by decompressing its chunk as far as the image ends,
so CHUNK_BYTES bounds the first-launch cost of a kernel, while larger chunks compress better
(README, "Kernel packs", has the measurements behind both constants). Chunks end at grid
boundaries, so a change to one grid recompresses that grid's chunks only, and compressed chunks
are cached by content (GEMS_AOT_CACHE_DIR/packs): a rebuild with unchanged images compresses
nothing.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import lzma
import os
import pathlib
import sys
import threading
import time
import zlib

CHUNK_BYTES = 256 << 10
PRESET = 6  # xz's default level: 9 gains under 1% here and compresses twice as slowly


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where an image lies: bytes [offset, offset + size) of decompressed chunk `chunk`."""

    chunk: int
    offset: int
    size: int
    crc32: int


@dataclasses.dataclass
class Pack:
    arch: int
    data: bytes
    first_chunk: int  # into the table of all packs' chunks
    chunks: list  # (offset into data, compressed size, decompressed size)


def plan(images) -> list:
    """images: [(arch, grid name, cubin)] in kernel-table order. Returns the chunks, in pack
    order (per target, in the order of `images`), as lists of indices into `images`."""
    chunks = []
    for arch in sorted({a for a, _, _ in images}):
        current, size, grid = [], 0, None
        for i, (a, g, cubin) in enumerate(images):
            if a != arch:
                continue
            if current and (g != grid or size + len(cubin) > CHUNK_BYTES):
                chunks.append(current)
                current, size = [], 0
            current.append(i)
            size += len(cubin)
            grid = g
        if current:
            chunks.append(current)
    return chunks


def compress(raw: bytes) -> bytes:
    return lzma.compress(raw, format=lzma.FORMAT_ALONE, preset=PRESET)


def _compressed(raw: bytes, cache: pathlib.Path) -> tuple:
    """(compressed bytes, whether it was compressed now rather than read from the cache)."""
    key = hashlib.sha256(raw + f"lzma-alone preset {PRESET}".encode()).hexdigest()[:32]
    path = cache / f"{key}.lzma"
    if path.exists():
        return path.read_bytes(), False
    data = compress(raw)
    cache.mkdir(parents=True, exist_ok=True)
    # A killed build never leaves a torn entry; two threads compressing equal chunks each write
    # their own file.
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return data, True


def build(images, archs, workers: int, cache: pathlib.Path):
    """Packs `images` ([(arch, grid name, cubin)]). Returns (packs, one per target in `archs`;
    placements, one per image)."""
    start = time.monotonic()
    chunks = plan(images)
    raws = [b"".join(images[i][2] for i in chunk) for chunk in chunks]
    # lzma releases the GIL while it compresses: threads are enough.
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        compressed = list(pool.map(lambda raw: _compressed(raw, cache / "packs"), raws))
    packs = {a: Pack(a, b"", 0, []) for a in archs}
    placements = [None] * len(images)
    data = {a: bytearray() for a in archs}
    for index, (chunk, raw, (stream, _)) in enumerate(zip(chunks, raws, compressed)):
        arch = images[chunk[0]][0]
        pack = packs[arch]
        if not pack.chunks:
            pack.first_chunk = index
        pack.chunks.append((len(data[arch]), len(stream), len(raw)))
        data[arch].extend(stream)
        offset = 0
        for i in chunk:
            cubin = images[i][2]
            placements[i] = Placement(index, offset, len(cubin), zlib.crc32(cubin))
            offset += len(cubin)
    for a in archs:
        packs[a].data = bytes(data[a])
    sys.stderr.write(f"[gems-aot] packs: {len(chunks)} chunks, {sum(now for _, now in compressed)} compressed, "
                     f"{sum(map(len, raws)) / 1e6:.1f} MB -> {sum(len(d) for d in data.values()) / 1e6:.1f} MB, "
                     f"{time.monotonic() - start:.1f}s\n")
    return [packs[a] for a in archs], placements
