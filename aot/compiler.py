"""The triton.compile driver: every variant for every target, in a process pool, cached.

The cache key of a compiled image is a hash of the kernel's source (Triton's JITFunction
cache_key, which covers the jit functions it calls), its signature, constexprs, hints,
options, the triton version and the target: an unchanged variant is never recompiled.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import multiprocessing
import os
import pathlib
import sys
import time

from aot import targets

# Metadata fields the C++ launcher relies on (Triton's KernelMetadata).
METADATA_FIELDS = (
    "name",
    "num_warps",
    "num_ctas",
    "shared",
    "global_scratch_size",
    "global_scratch_align",
    "profile_scratch_size",
    "profile_scratch_align",
    "launch_pdl",
    "launch_cooperative_grid",
    "tensordesc_meta",
    "triton_version",
)


def cache_dir() -> pathlib.Path:
    root = os.environ.get("GEMS_AOT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gems_aot"
    )
    return pathlib.Path(root)


TARGET_NAMES = {i: t.name for i, t in targets.TARGETS.items()}
parse_archs = targets.parse


@dataclasses.dataclass(frozen=True)
class Job:
    """One (variant, target) compile."""

    symbol: str
    variant: object  # aot.variants.Variant
    arch: int

    def key(self) -> str:
        import triton

        v = self.variant
        payload = json.dumps(
            {
                "src": v.jit_function().cache_key,
                "kernel": v.kernel,
                "signature": v.signature,
                "constexprs": [(n, repr(x)) for n, x in v.constexprs],
                "divisible16": v.divisible16,
                "num_warps": v.num_warps,
                "num_stages": v.num_stages,
                "launch_pdl": v.launch_pdl,
                "triton": triton.__version__,
                "arch": self.arch,
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


def compile_variant(variant, arch: int):
    """Compiles one variant for target `arch` (aot/targets.py); returns (image bytes: a cubin or a
    hsaco, metadata dict)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = variant.jit_function()
    names = [n for n, _ in variant.signature]
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in variant.divisible16}
    source = ASTSource
    if getattr(fn, "is_gluon", lambda: False)():
        from triton.experimental.gluon._runtime import GluonASTSource as source
    src = source(fn, signature=dict(variant.signature), constexprs=dict(variant.constexprs), attrs=attrs)
    target = targets.TARGETS[arch]
    options = {"num_warps": variant.num_warps, "num_stages": variant.num_stages}
    if target.backend == "cuda":
        options["launch_pdl"] = variant.launch_pdl
    compiled = triton.compile(src, target=GPUTarget(target.backend, target.arch, target.warp_size), options=options)
    md = compiled.metadata
    meta = {f: getattr(md, f, None) for f in METADATA_FIELDS}
    # Fields a backend's metadata lacks (HIP has no PDL) read as off.
    meta.update({f: False if f.startswith("launch_") else 0 for f, v in meta.items() if v is None
                 and f not in ("name", "tensordesc_meta", "triton_version")})
    meta["tensordesc_meta"] = list(meta["tensordesc_meta"] or [])
    if meta["tensordesc_meta"]:
        raise NotImplementedError(f"{variant.kernel}: host-side tensor descriptors are not supported by the launcher")
    meta["triton_version"] = meta["triton_version"] or triton.__version__
    return compiled.asm[target.binary], meta


def _run_job(job: Job, key: str, cache: pathlib.Path):
    cubin_path, meta_path = cache / f"{key}.cubin", cache / f"{key}.json"
    if cubin_path.exists() and meta_path.exists():
        return job, cubin_path.read_bytes(), json.loads(meta_path.read_text()), True
    cubin, meta = compile_variant(job.variant, job.arch)
    cache.mkdir(parents=True, exist_ok=True)
    # Write to temporaries first so a killed build never leaves a torn cache entry.
    for path, data in ((cubin_path, cubin), (meta_path, json.dumps(meta).encode())):
        tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return job, cubin, meta, False


class Progress:
    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.done, self.cached, self.stream = total, 0, 0, stream
        self.compiled = []
        self.tty = stream.isatty()
        self.start = time.monotonic()
        self.last_report = -1

    def step(self, job: Job, cached: bool):
        self.done += 1
        self.cached += cached
        if not cached:
            self.compiled.append(f"{TARGET_NAMES[job.arch]} {job.symbol}")
        pct = 100 * self.done // max(self.total, 1)
        line = (
            f"[gems-aot] {self.done}/{self.total} variants ({self.cached} cached) "
            f"{time.monotonic() - self.start:5.1f}s  {TARGET_NAMES[job.arch]} {job.symbol}"
        )
        if self.tty:
            self.stream.write("\r\033[K" + line)
        elif pct // 10 != self.last_report or self.done == self.total:
            self.last_report = pct // 10
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self):
        if self.tty:
            self.stream.write("\n")
        self.stream.write(
            f"[gems-aot] {self.total} images, {self.total - self.cached} compiled, {self.cached} from cache, "
            f"{time.monotonic() - self.start:.1f}s\n"
        )
        if 0 < len(self.compiled) <= 50 < self.total:
            # A rebuild that recompiles a few variants names them (their cache key changed).
            self.stream.write(f"[gems-aot] compiled: {', '.join(sorted(self.compiled))}\n")


def compile_all(jobs, workers: int, cache: pathlib.Path | None = None):
    """Compiles jobs (cache first); returns {(symbol, arch): (cubin, meta)} and the compiled count."""
    cache = cache or cache_dir()
    results, progress = {}, Progress(len(jobs))
    # Keys are taken here, before any compile: a worker that has compiled a kernel can see a
    # different cache_key for a jit function it shares with the next one (seen with triton 3.6:
    # a no-change rebuild recompiled a different few strided gelu variants each time).
    keys = {job: job.key() for job in jobs}
    errors = []

    def collect(job, cubin, meta, cached):
        results[(job.symbol, job.arch)] = (cubin, meta)
        progress.step(job, cached)

    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            collect(*_run_job(job, keys[job], cache))
    else:
        # Fresh interpreters, not forks of this one (which holds threads): every module a variant
        # names is importable by name, generated ones included (aot/pointwise/triton_source.py).
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(_run_job, job, keys[job], cache): job for job in jobs}
            for fut in concurrent.futures.as_completed(futures):
                try:
                    collect(*fut.result())
                except Exception as e:  # report every failing variant, not just the first
                    job = futures[fut]
                    errors.append(f"{TARGET_NAMES[job.arch]} {job.symbol}: {type(e).__name__}: {e}")
    progress.finish()
    if errors:
        raise RuntimeError("AOT compile failed for:\n  " + "\n  ".join(errors))
    return results, progress.total - progress.cached
