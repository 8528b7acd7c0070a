"""enable / disable / use_gems: route aten CUDA ops to gems kernels in eager mode.

The switch lives in the extension: each aten overload in `registered_ops()` gets gems' kernel
registered at the CUDA dispatch key, and removing it restores ATen's own. Inputs a gems kernel
does not cover run ATen's CUDA kernel directly and are counted (`fallback_counts()`).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterable, Iterator, Optional, Union

import torch

from gems_aot._record import Recorder, _extension_counts

_lock = threading.Lock()


def registered_ops() -> list[str]:
    """The aten overloads gems can override, e.g. 'add.Tensor', 'add_.Tensor', 'add.out'."""
    return [entry.split("\t")[0] for entry in torch.ops.gems._available_overrides()]


def opt_in_ops() -> list[str]:
    """The overloads `enable()` leaves to ATen unless `include` names them: gems' kernel measured
    slower than ATen's there (the README's op list says which and by how much)."""
    return [entry.split("\t")[0] for entry in torch.ops.gems._available_overrides() if entry.endswith("\topt_in")]


def _base(overload: str) -> str:
    """'add_.Tensor' -> 'add', 'sum.IntList_out' -> 'sum', 'relu_' -> 'relu'."""
    name = overload.split(".", 1)[0]
    return name[:-1] if name.endswith("_") else name


def _select(names: Optional[Iterable[str]], available: list[str], what: str) -> set[str]:
    if names is None:
        return set(available) - set(opt_in_ops())
    if isinstance(names, str):
        names = [names]
    chosen: set[str] = set()
    for name in names:
        # A bare name ("add") means every overload of the op; "add.Tensor" means just that one.
        matched = [o for o in available if o == name or _base(o) == name]
        if not matched:
            raise ValueError(
                f"gems_aot: {what} names unknown op {name!r}; known: {sorted({_base(o) for o in available})} "
                "or one of their overloads in gems_aot.registered_ops()"
            )
        chosen.update(matched)
    return chosen


def _install(names: Iterable[str]) -> list[str]:
    return list(torch.ops.gems._set_overrides(sorted(names)))


def enable(include: Optional[Iterable[str]] = None, exclude: Optional[Iterable[str]] = None) -> list[str]:
    """Routes the selected aten ops (by default all of `registered_ops()` but `opt_in_ops()`, whose
    gems kernels measured slower than ATen's) to gems kernels.

    include / exclude take op names ("add": all its overloads) or overloads ("add.out"); an opt-in
    op is routed where `include` names it.
    Replaces the current selection; returns the overloads now overridden.
    """
    available = registered_ops()
    selected = _select(include, available, "include") - (
        _select(exclude, available, "exclude") if exclude is not None else set()
    )
    with _lock:
        _install(selected)
    return sorted(selected)


def disable() -> None:
    """Restores ATen's kernels for every op gems overrode."""
    with _lock:
        _install([])


def enabled_ops() -> list[str]:
    return sorted(torch.ops.gems._installed_overrides())


def is_enabled() -> bool:
    return bool(enabled_ops())


@contextlib.contextmanager
def use_gems(include: Optional[Iterable[str]] = None, exclude: Optional[Iterable[str]] = None,
             record: bool = False) -> Iterator[Union[list[str], Recorder]]:
    """`enable(include, exclude)` for the block, then the previous selection again (also when the
    block raises, and when blocks nest). Yields the overloads enabled; with record=True, a
    `Recorder` of the block's aten calls on CUDA instead (its `enabled` holds that list)."""
    with _lock:
        previous = list(torch.ops.gems._installed_overrides())
    try:
        enabled = enable(include, exclude)
        if not record:
            yield enabled
            return
        with Recorder() as rec:
            rec.enabled = enabled
            yield rec
    finally:
        with _lock:
            _install(previous)


def fallback_counts() -> dict[tuple[str, str], int]:
    """{(aten overload, reason): calls that went to ATen} since load or the last reset."""
    return {key: n for key, n in _extension_counts().items() if key[1] not in ("none", "transfer")}


def reset_fallback_counts() -> None:
    torch.ops.gems._reset_fallback_counts()


def warn_on_fallback(on: bool = True) -> bool:
    """Warn (Python's warnings, once per aten overload and reason in the process) when an override
    runs ATen's kernel, saying why; off by default, also set by GEMS_AOT_WARN_FALLBACK=1 at import.
    Costs nothing on calls gems serves. Returns whether warnings were on."""
    return bool(torch.ops.gems._set_fallback_warnings(on))
