"""Coverage recording: which aten ops a block calls on the GPU, and what ran each call.

    with gems_aot.use_gems(record=True) as rec:      # or: with gems_aot.record() as rec:
        loss = model(x).sum(); loss.backward()
    rec.report()                                     # a table; rec.summary() / rec.as_dict() for data

Every aten op call that reaches the dispatcher with a tensor on the recorded device (CUDA by
default) is counted, forward and backward, under its overload name, with the outcome of each
call:

- ``gems``: a gems kernel ran. An op gems does not override but that is composed of other ops
  (no CUDA kernel of its own, such as ``_to_copy``) counts as gems when it reached an override
  (``copy_``; the note says "via copy_"), and as ``aten`` when it reached none. The ops it calls
  are not seen one by one, so an ATen kernel it launches beside the override goes uncounted;
- ``fallback``: the op is overridden but the input went to ATen's kernel (the reason is kept);
- ``aten``: ATen's kernel ran because gems does not override the op, or the override is not
  enabled in the block. An op with a CUDA kernel of its own stays ``aten`` when gems served a
  helper call inside it (the zero-fill of ``embedding_dense_backward``; noted "inner fill_.Scalar");
- ``no kernel``: views, allocations and other calls that launch no kernel;
- ``transfer``: copies between devices (ATen's memcpy, which no kernel replaces).

Ops that PyTorch decomposes before dispatch (CompositeImplicitAutograd, such as ``linear`` or
``softmax``'s wrapper) appear as the ops they decompose into. Recording adds two extension calls
per op call; it is for measuring coverage, not for timing.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import sys
import threading
from typing import Callable, Iterator, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

OUTCOMES = ("gems", "fallback", "aten", "no kernel", "transfer")
# Ops that launch no kernel although their schema returns a fresh tensor: allocations and
# metadata changes.
NO_KERNEL = {"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "resize_", "set_",
             "detach", "detach_", "lift_fresh", "_unsafe_view", "_has_compatible_shallow_copy_type"}
# Ops that move data between devices.
TRANSFER = {"_local_scalar_dense"}

_depth_lock = threading.Lock()
_depth = 0


def _set_recording(on: bool) -> None:
    """Counts nested recorders; the extension records while at least one is open."""
    global _depth
    with _depth_lock:
        _depth += 1 if on else -1
        torch.ops.gems._set_recording(_depth > 0)


def _extension_counts() -> dict[tuple[str, str], int]:
    """{(aten overload, outcome): calls}: the extension's counters, served calls ("none") included."""
    counts = {}
    for line in torch.ops.gems._fallback_report().splitlines():
        op, reason, n = line.split("\t")
        counts[(op, reason)] = int(n)
    return counts


@dataclasses.dataclass
class OpRecord:
    """The calls of one aten overload."""

    calls: int = 0
    outcomes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    fallback_reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    via: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    inner: collections.Counter = dataclasses.field(default_factory=collections.Counter)


def _is_view(func) -> bool:
    return any(r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns)


class Recorder(TorchDispatchMode):
    """Records aten op calls on `device_type` and their outcomes; see the module docstring.

    A call's outcome is read from the extension's counters around it: `totals` ({served, fallen
    back, transfers} so far) is cheap and read every call, `counts` (per op and outcome) only
    when the totals moved. Both are injectable for tests. Calls from several threads at once
    would blur the attribution; a model's forward and backward are sequential."""

    def __init__(self, device_type: str = "cuda",
                 totals: Optional[Callable[[], list]] = None,
                 counts: Optional[Callable[[], dict]] = None):
        super().__init__()
        self.device_type = device_type
        self.ops: dict[str, OpRecord] = collections.defaultdict(OpRecord)
        self.enabled: list[str] = []
        self._totals = totals or torch.ops.gems._recorded_totals
        self._counts = counts or _extension_counts
        self._registered = {entry.split("\t")[0] for entry in torch.ops.gems._available_overrides()}
        self._lock = threading.Lock()
        self._last_totals = None
        self._last_counts = {}

    def _on_device(self, args, kwargs) -> bool:
        for leaf in tree_leaves((args, kwargs)):
            if isinstance(leaf, torch.Tensor) and leaf.device.type == self.device_type:
                return True
        device = kwargs.get("device")
        return device is not None and torch.device(device).type == self.device_type

    def _counts_moved(self) -> dict[tuple[str, str], int]:
        """The counts added since the last look ({} when the totals did not move)."""
        totals = list(self._totals())
        if totals == self._last_totals:
            return {}
        counts = self._counts()
        moved = {key: n - self._last_counts.get(key, 0) for key, n in counts.items()}
        self._last_totals, self._last_counts = totals, counts
        return {key: n for key, n in moved.items() if n > 0}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self._on_device(args, kwargs):
            return func(*args, **kwargs)
        name = func.name().split("::", 1)[1]  # "add.Tensor", "mm"
        if func.namespace == "gems":
            self._count(name, "gems")
            return func(*args, **kwargs)
        self._counts_moved()  # whatever ran outside recorded calls is not this call's
        out = func(*args, **kwargs)
        moved = self._counts_moved()
        fallbacks = collections.Counter({reason: n for (_, reason), n in moved.items()
                                         if reason not in ("none", "transfer")})
        served = collections.Counter({op: n for (op, reason), n in moved.items() if reason == "none"})
        base = name.split(".", 1)[0]
        if fallbacks:
            self._count(name, "fallback", reasons=fallbacks)
        elif served and name in served:
            self._count(name, "gems")
        elif served and torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), "CUDA"):
            self._count(name, "aten", inner=served)
        elif served:
            self._count(name, "gems", via=served)
        elif any(reason == "transfer" for _, reason in moved) or base in TRANSFER:
            self._count(name, "transfer")
        elif _is_view(func) or base in NO_KERNEL:
            self._count(name, "no kernel")
        else:
            self._count(name, "aten")
        return out

    def _count(self, name, outcome, reasons=None, via=None, inner=None):
        with self._lock:
            rec = self.ops[name]
            rec.calls += 1
            rec.outcomes[outcome] += 1
            rec.fallback_reasons.update(reasons or {})
            rec.via.update(via or {})
            rec.inner.update(inner or {})

    def __enter__(self):
        self._last_totals = None  # counts before the block are not the block's
        _set_recording(True)
        try:
            return super().__enter__()
        except BaseException:
            _set_recording(False)
            raise

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            _set_recording(False)

    def summary(self) -> dict:
        """Calls and distinct ops by outcome, and the share of kernel-launching calls gems served."""
        calls = collections.Counter()
        for rec in self.ops.values():
            calls.update(rec.outcomes)
        launching = calls["gems"] + calls["fallback"] + calls["aten"]
        ops_launching = [n for n, r in self.ops.items() if r.outcomes.keys() - {"no kernel", "transfer"}]
        ops_all_gems = [n for n in ops_launching if set(self.ops[n].outcomes) <= {"gems", "no kernel", "transfer"}]
        return {
            "calls": sum(calls.values()),
            "calls_by_outcome": {k: calls[k] for k in OUTCOMES},
            "kernel_calls": launching,
            "served_share": calls["gems"] / launching if launching else None,
            "ops": len(self.ops),
            "kernel_ops": len(ops_launching),
            "ops_served_always": len(ops_all_gems),
        }

    def as_dict(self) -> dict:
        return {
            "device_type": self.device_type,
            "enabled": list(self.enabled),
            "summary": self.summary(),
            "ops": {name: {"calls": r.calls, "outcomes": dict(r.outcomes),
                           "fallback_reasons": dict(r.fallback_reasons), "via": dict(r.via), "inner": dict(r.inner)}
                    for name, r in sorted(self.ops.items())},
        }

    def table(self) -> str:
        """One row per op, most-called first, then the summary."""
        rows = [("aten op", "calls", "gems", "fallback", "aten", "no kernel", "transfer", "note")]
        for name, r in sorted(self.ops.items(), key=lambda item: (-item[1].calls, item[0])):
            notes = []
            if r.fallback_reasons:
                notes.append("fallback: " + ", ".join(f"{k} x{v}" for k, v in r.fallback_reasons.items()))
            if r.via:
                notes.append("via " + ", ".join(sorted(r.via)))
            if r.inner:
                notes.append("inner " + ", ".join(sorted(r.inner)))
            if r.outcomes["aten"]:
                if self.device_type != "cuda":
                    notes.append(f"gems has no {self.device_type} kernels")
                else:
                    notes.append("not enabled" if name in self._registered else "no gems kernel")
            rows.append((name, str(r.calls), *(str(r.outcomes[k] or "") for k in OUTCOMES), "; ".join(notes)))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) if i in (0, 7) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
                 for row in rows]
        s = self.summary()
        share = "n/a" if s["served_share"] is None else f"{100 * s['served_share']:.1f}%"
        lines += ["", f"{s['calls']} calls of {s['ops']} aten ops on {self.device_type}; {s['kernel_calls']} launch "
                      f"kernels, of which gems served {s['calls_by_outcome']['gems']} ({share}); "
                      f"{s['ops_served_always']} of {s['kernel_ops']} kernel-launching ops always ran on gems"]
        return "\n".join(lines)

    def report(self, file=None) -> None:
        """Prints `table()` (to stdout by default)."""
        print(self.table(), file=file or sys.stdout)


@contextlib.contextmanager
def record(device_type: str = "cuda") -> Iterator[Recorder]:
    """Records the aten ops the block calls on `device_type`, whether gems is enabled or not."""
    with Recorder(device_type) as rec:
        yield rec
