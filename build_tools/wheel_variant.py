"""What a binary build of gems-aot is called and what it requires, as one function of the build's
torch version, CUDA version and targets (no torch import: setup.py, build_wheel.py and the CPU
tests call it).

The extension is a Python-free library linked against one torch release's C++ libraries, with
cubins for a list of GPU targets. So a wheel is tagged py3-none-<platform> (any Python 3), pins the
torch release it was built with (torch==X.Y.*), and carries a local version that names the build:
0.1.0+torch214.cu130.sm80.sm90a.sm100a is gems-aot 0.1.0 for torch 2.14, CUDA 13.0, with cubins
for sm_80, sm_90a and sm_100a (the torchXYZ-cuXYZ naming of PyTorch's own wheels and of prebuilt
kernel projects). The `cuda` extra asks for the CUDA runtime of the build's CUDA major.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from aot.targets import TARGETS  # noqa: E402  (no torch import either)

VERSION = "0.1.0"  # the project's version; a binary build adds its local version to it

# Target -> its name without punctuation (aot/targets.py): sm80, sm90a, sm100a, gfx942, gfx950.
TARGET_TAGS = {i: t.tag for i, t in TARGETS.items()}


@dataclasses.dataclass(frozen=True)
class Variant:
    version: str  # the base version with the build's local version: 0.1.0+torch214.cu130.sm90a
    requires: tuple  # Requires-Dist of the wheel
    cuda_extra: tuple  # what `pip install gems-aot[cuda]` adds
    python_tag: str = "py3"
    abi_tag: str = "none"

    def wheel_name(self, platform: str) -> str:
        return f"gems_aot-{self.version}-{self.python_tag}-{self.abi_tag}-{platform}.whl"


def torch_release(torch_version: str) -> tuple:
    """(major, minor) of a torch version such as 2.14.1+cu130 or 2.11.0a0+git1234."""
    match = re.match(r"(\d+)\.(\d+)", torch_version)
    if not match:
        raise ValueError(f"not a torch version: {torch_version!r}")
    return int(match[1]), int(match[2])


def cuda_release(cuda_version) -> tuple:
    """(major, minor) of torch.version.cuda ('13.0'); a torch without CUDA cannot build gems-aot."""
    match = re.fullmatch(r"(\d+)\.(\d+)(\.\d+)?", cuda_version or "")
    if not match:
        raise ValueError(f"gems-aot needs a CUDA build of torch; torch.version.cuda is {cuda_version!r}")
    return int(match[1]), int(match[2])


def variant(base_version: str, torch_version: str, cuda_version, archs) -> Variant:
    """The wheel of gems-aot base_version built with torch torch_version (torch.__version__),
    CUDA cuda_version (torch.version.cuda) and cubins for archs (80, 90, 100)."""
    major, minor = torch_release(torch_version)
    cuda_major, cuda_minor = cuda_release(cuda_version)
    unknown = sorted(set(archs) - set(TARGET_TAGS))
    if not archs or unknown:
        raise ValueError(f"targets must be among {sorted(TARGET_TAGS)}; got {sorted(archs)}")
    local = ".".join([f"torch{major}{minor}", f"cu{cuda_major}{cuda_minor}"] + [TARGET_TAGS[a] for a in sorted(set(archs))])
    return Variant(
        version=f"{base_version}+{local}",
        requires=(f"torch=={major}.{minor}.*",),
        cuda_extra=(f"cuda-toolkit[cudart]=={cuda_major}.*",),
    )
