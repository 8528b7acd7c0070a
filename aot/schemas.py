"""Schemas and C++ signatures, for every family.

The aten overloads' schemas come from torch itself (`aten_schema`); a gems op's from its GemsOp
declaration. From either, `cpp_signature` gives the C++ function the dispatcher calls (arguments
in schema order, so an out= argument comes last), and `family_header` the prototypes of a family's
`gems::cuda::`, `gems::meta::` and `gems::aten_impl::` functions, which codegen writes to the build
folder as `gems_<family>_ops.h`: no family writes a schema or a prototype by hand.
"""

from __future__ import annotations

import functools

# Schema argument type (FunctionSchema argument.real_type) -> C++ parameter type.
CPP_TYPES = {
    "Tensor": "const at::Tensor&",
    "Optional[Tensor]": "const std::optional<at::Tensor>&",
    "number": "const at::Scalar&",
    "Optional[number]": "const std::optional<at::Scalar>&",
    "str": "c10::string_view",
    "Optional[str]": "std::optional<c10::string_view>",
    "float": "double",
    "Optional[float]": "std::optional<double>",
    "int": "int64_t",
    "Optional[int]": "std::optional<int64_t>",
    "bool": "bool",
    "ScalarType": "at::ScalarType",
    "Optional[ScalarType]": "std::optional<at::ScalarType>",
    "List[int]": "at::IntArrayRef",
    "Optional[List[int]]": "at::OptionalIntArrayRef",
    # A list of tensors, written (Tensor(a!)[]) or not, as ATen's own signatures take it: the
    # list is read-only, its tensors' data is what an op writes.
    "List[Tensor]": "at::TensorList",
}
HEADER_INCLUDES = ("array", "ATen/core/Tensor.h", "c10/core/ScalarType.h", "c10/util/OptionalArrayRef.h",
                   "c10/util/string_view.h")


def schemas_for(base: str):
    import torch

    return torch._C._jit_get_schemas_for_operator(f"aten::{base}")


def has_schema(name: str) -> bool:
    base, _, overload = name.partition(".")
    return any(s.overload_name == overload for s in schemas_for(base))


def has_kernel(name: str, key: str) -> bool:
    import torch

    return torch._C._dispatch_has_kernel_for_dispatch_key(f"aten::{name}", key)


@functools.lru_cache(maxsize=None)
def aten_schema(name: str):
    import torch

    base, _, overload = name.partition(".")
    for s in schemas_for(base):
        if s.overload_name == overload:
            return s
    raise ValueError(f"aten::{name}: no such overload in torch {torch.__version__}")


@functools.lru_cache(maxsize=None)
def parse(schema: str):
    """A gems op's declared schema, parsed as torch parses it."""
    import torch

    return torch._C.parse_schema(schema)


def same_up_to_symint(gems, aten) -> bool:
    """Whether a gems op's parsed schema is the aten op's, but for SymInt arguments it takes as
    int (gems::rms_norm's normalized_shape): calls of one are calls of the other."""
    def text(schema):
        return str(schema).split("::", 1)[-1].replace("SymInt", "int")

    return text(gems) == text(aten)


def written(schema) -> list:
    """The arguments the op writes (Tensor(a!)): self for in-place, out= arguments."""
    return [a.name for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write]


def overload_kind(schema) -> str:
    """functional, inplace (self is written) or out (an out= argument)."""
    names = written(schema)
    if not names:
        return "functional"
    return "inplace" if names == ["self"] else "out"


def cpp_params(schema) -> list:
    """(C++ type, name) of every argument, in schema order."""
    out = []
    for a in schema.arguments:
        t = str(a.real_type)
        if t == "Tensor" and a.alias_info is not None and a.alias_info.is_write:
            out.append(("at::Tensor&", a.name))
        elif t == "List[bool]" and a.N:  # bool[3]: a fixed-size array, as the dispatcher passes it
            out.append((f"::std::array<bool, {a.N}>", a.name))
        elif t in CPP_TYPES:
            out.append((CPP_TYPES[t], a.name))
        else:
            raise ValueError(f"{schema}: argument type {t} has no C++ type in aot/schemas.py")
    return out


def cpp_return(schema) -> str:
    if not schema.returns:
        return "void"  # -> (): an op that only writes its arguments (the fused optimizer steps)
    if not any(r.alias_info is not None and r.alias_info.is_write for r in schema.returns):
        # New tensors, also from an op that writes an argument (gems::cross_entropy_loss_and_grad_)
        return "at::Tensor" if len(schema.returns) == 1 else f"std::tuple<{', '.join(['at::Tensor'] * len(schema.returns))}>"
    names = written(schema)
    if len(names) > 1:
        return f"std::tuple<{', '.join(['at::Tensor&'] * len(names))}>"
    return "at::Tensor&"


def cpp_signature(schema) -> tuple:
    """(return type, parameter list) of the C++ function the dispatcher calls for this schema."""
    return cpp_return(schema), ", ".join(f"{t} {n}" for t, n in cpp_params(schema))


def family_header(module: str, gems_ops, aten_overrides) -> str:
    """The prototypes of a family's C++ functions: gems::cuda:: for every GemsOp, gems::meta:: for
    those without meta_from_aten, gems::aten_impl:: for every AtenOverride."""
    lines = [f"// Generated by aot/schemas.py from the declarations in {module.replace('.', '/')}.py. Do not edit.",
             "#pragma once", ""]
    lines += [f"#include <{h}>" for h in HEADER_INCLUDES]
    lines += ["", "#include <optional>", "#include <tuple>", "", "namespace gems {"]
    gems = [(o.cpp, *cpp_signature(parse(o.schema))) for o in gems_ops]
    metas = [(o.cpp, *cpp_signature(parse(o.schema))) for o in gems_ops if not o.meta_from_aten]
    overrides = [(o.cpp, *cpp_signature(aten_schema(o.name))) for o in aten_overrides]
    for ns, group in (("cuda", gems), ("meta", metas), ("aten_impl", overrides)):
        lines.append(f"namespace {ns} {{")
        lines += [f"{ret} {name}({params});" for name, ret, params in group]
        lines.append(f"}}  // namespace {ns}")
    lines += ["}  // namespace gems", ""]
    return "\n".join(lines)

