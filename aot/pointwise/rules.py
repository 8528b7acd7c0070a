"""Named rules of pointwise overload declarations: what an overload's guard checks and how a runtime
parameter is computed from the aten arguments, as data. Each rule knows the schema arguments it
reads (`arguments`: the tests and the benchmark give those values) and renders its C++ for the
overload's schema (an optional argument is read through its std::optional)."""

from __future__ import annotations


def _optional(schema, name: str) -> bool:
    return str(next(a.type for a in schema.arguments if a.name == name)).startswith("Optional")


class Rule:
    """A rule over schema arguments, with keyword options; equal when of the same kind over the
    same arguments and options (declarations are compared and hashed)."""

    def __init__(self, *arguments: str, **options: str):
        self.arguments = arguments
        self.options = options

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and (self.arguments, self.options) == (other.arguments, other.options)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.arguments, tuple(sorted(self.options.items()))))

    def __repr__(self) -> str:
        args = [repr(a) for a in self.arguments] + [f"{k}={v!r}" for k, v in self.options.items()]
        return f"{type(self).__name__}({', '.join(args)})"

    def cpp(self, schema) -> str:
        raise NotImplementedError


# ---- guards: a call whose guard fails goes to ATen (reason "args") -----------------------------


class NotIntegerByFloat(Rule):
    """ATen promotes an integer self clamped by a floating bound to a floating result: not a
    same-dtype kernel."""

    def cpp(self, schema) -> str:
        terms = [f"({a} && {a}->isFloatingPoint())" if _optional(schema, a) else f"{a}.isFloatingPoint()"
                 for a in self.arguments]
        floating = terms[0] if len(terms) == 1 else "(" + " || ".join(terms) + ")"
        return f"!(c10::isIntegralType(self.scalar_type(), true) && {floating})"


class AnyGiven(Rule):
    """At least one of the optional arguments is given."""

    def cpp(self, schema) -> str:
        return "(" + " || ".join(f"{a}.has_value()" for a in self.arguments) + ")"


class OnSelfDevice(Rule):
    """Tensor arguments on self's device (an absent optional one passes): the kernels take no CPU
    scalars where ATen's configuration does not."""

    def cpp(self, schema) -> str:
        return " && ".join(f"(!{a}.has_value() || {a}->device() == self.device())" if _optional(schema, a)
                           else f"{a}.device() == self.device()" for a in self.arguments)


class Floating(Rule):
    def cpp(self, schema) -> str:
        return " && ".join(f"c10::isFloatingType({a}.scalar_type())" for a in self.arguments)


class SameDtype(Rule):
    """The first argument has the second's dtype."""

    def cpp(self, schema) -> str:
        a, b = self.arguments
        return f"{a}.scalar_type() == {b}.scalar_type()"


class DtypeIs(Rule):
    """The argument's dtype is `dtype`, a c10::ScalarType constant (e.g. at::kInt)."""

    def cpp(self, schema) -> str:
        return f"{self.arguments[0]}.scalar_type() == {self.options['dtype']}"


class PlainCopy(Rule):
    """copy_ (self, src) within one device, no overlap, no conjugate or negative bits
    (pointwise::plain_copy)."""

    def cpp(self, schema) -> str:
        return f"pointwise::plain_copy({', '.join(self.arguments)})"


class NoInternalOverlap(Rule):
    """An in-place target whose elements do not share memory (an expanded self gets ATen's warning)."""

    def cpp(self, schema) -> str:
        return f"at::has_internal_overlap({self.arguments[0]}) != at::MemOverlap::Yes"


# ---- params: a runtime scalar of the kernel ------------------------------------------------------


class InSelfDtype(Rule):
    """The scalar as self's dtype holds it (ATen's threshold kernels take theirs so)."""

    def cpp(self, schema) -> str:
        return f"pointwise::in_dtype({self.arguments[0]}, self.scalar_type())"


class BoundOrNone(Rule):
    """An optional clamp bound, or the extreme of self's dtype that bounds nothing (side: "lower"
    or "upper")."""

    def cpp(self, schema) -> str:
        a = self.arguments[0]
        return f"{a}.has_value() ? *{a} : pointwise::no_{self.options['side']}_bound(self.scalar_type())"


class ValueOr(Rule):
    """An optional float argument, or a default (C++)."""

    def cpp(self, schema) -> str:
        return f"{self.arguments[0]}.value_or({self.options['default']})"


class FiniteOr(Rule):
    """An optional float argument, or the largest (extreme "max") or lowest ("min") finite value of
    self's dtype (nan_to_num's posinf and neginf)."""

    def cpp(self, schema) -> str:
        a = self.arguments[0]
        return f"{a}.has_value() ? at::Scalar(*{a}) : pointwise::finite_{self.options['extreme']}(self.scalar_type())"


def param_cpp(param, schema) -> str:
    """A param's C++: a schema argument passed as it is, or a rule's expression."""
    return param if isinstance(param, str) else param.cpp(schema)


def param_argument(param) -> str:
    """The schema argument a param reads."""
    return param if isinstance(param, str) else param.arguments[0]
