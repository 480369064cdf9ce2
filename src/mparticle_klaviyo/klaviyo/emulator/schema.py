"""A tiny strict schema language: typed nodes that reject the first violation they meet.

Unlike the OpenAPI document (which allows any extra key), an ``Obj`` rejects keys it does
not declare, as Klaviyo does, naming the JSON:API resource the key was sent on. ``Free``
marks the free-form objects (custom ``properties``, ``meta.patch_properties.*``) where any
key is allowed. :func:`validate` raises :class:`ApiError` with the JSON pointer of the field.
Checking is top-down: a level's unknown and missing keys are reported before its children.

Speed matters (the emulator serves benchmarks), so nodes do not build pointers while they
walk: a failure raises :class:`FieldError`, and each enclosing node adds its key on the way out.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping

from .errors import ApiError, invalid, invalid_payload, required_field, unknown_field

Build = Callable[[str, str], ApiError]
"""Makes the error from the failing field's name and its JSON pointer."""


class FieldError(Exception):
    """A failure below some node; ``tokens`` is the path to it, innermost first."""

    def __init__(self, build: Build, *tokens: str) -> None:
        super().__init__()
        self.build = build
        self.tokens = list(tokens)


def validate(node: Node, body: object) -> None:
    """Check ``body`` against ``node``; raise :class:`ApiError` at the first violation."""
    try:
        node.check(body, "")
    except FieldError as violation:
        tokens = violation.tokens[::-1]
        pointer = "".join(f"/{token}" for token in tokens)
        raise violation.build(tokens[-1] if tokens else "", pointer) from None


def escape(token: str) -> str:
    """Escape one JSON pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def _message(template: str) -> Build:
    # Only our own text goes through format(); values sent by clients never do.
    return lambda name, ptr: invalid(template.format(name=name), ptr)


_NOT_NULL = _message("'{name}' may not be null.")
_NOT_NUMBER = _message("'{name}' must be a number.")
_NOT_BOOLEAN = _message("'{name}' must be a boolean.")
_NOT_OBJECT = _message("'{name}' must be an object.")
_NOT_ARRAY = _message("'{name}' must be an array.")


class Node(abc.ABC):
    """A schema node: ``check`` raises :class:`FieldError` at the first failure."""

    __slots__ = ("nullable",)

    def __init__(self, nullable: bool = False) -> None:
        self.nullable = nullable

    @abc.abstractmethod
    def check(self, value: object, resource: str) -> None:
        """Validate ``value`` found inside a resource of type ``resource``."""

    def _null(self) -> None:
        # Why: the spec marks most attributes `nullable`; those it does not must carry a value.
        if not self.nullable:
            raise FieldError(_NOT_NULL)


class Str(Node):
    """A string, optionally one of ``choices`` and optionally passing ``fmt``."""

    __slots__ = ("choices", "fmt", "wrong")

    def __init__(
        self,
        nullable: bool = True,
        choices: tuple[str, ...] = (),
        fmt: Callable[[str], bool] | None = None,
        expected: str = "a string",
    ) -> None:
        super().__init__(nullable)
        self.choices = choices
        self.fmt = fmt
        self.wrong = _message("'{name}' must be " + expected + ".")

    def check(self, value: object, resource: str) -> None:
        """Reject non-strings, values failing ``fmt`` and values outside ``choices``."""
        if value is None:
            return self._null()
        if type(value) is not str or (self.fmt is not None and not self.fmt(value)):
            raise FieldError(self.wrong)
        if self.choices and value not in self.choices:
            options = ", ".join(f"'{c}'" for c in self.choices)
            raise FieldError(
                lambda name, ptr: invalid(f"'{value}' is not a valid choice for '{name}' ({options}).", ptr)
            )


class TypeTag(Node):
    """The JSON:API ``type`` member: exactly one expected string."""

    __slots__ = ("expected",)

    def __init__(self, expected: str) -> None:
        super().__init__(False)
        self.expected = expected

    def check(self, value: object, resource: str) -> None:
        """Reject anything but the expected type name."""
        if type(value) is not str or value != self.expected:
            detail = f"'{value}' is not a valid type for this resource; expected '{self.expected}'."
            raise FieldError(lambda _name, ptr: invalid(detail, ptr))


class Num(Node):
    """A JSON number (integer or fraction); booleans and numeric strings are rejected."""

    __slots__ = ()

    def check(self, value: object, resource: str) -> None:
        """Reject anything that is not an int or float."""
        if value is None:
            return self._null()
        if type(value) is not int and type(value) is not float:
            raise FieldError(_NOT_NUMBER)


class Bool(Node):
    """A JSON boolean."""

    __slots__ = ()

    def check(self, value: object, resource: str) -> None:
        """Reject anything that is not ``true`` or ``false``."""
        if value is None:
            return self._null()
        if type(value) is not bool:
            raise FieldError(_NOT_BOOLEAN)


class Free(Node):
    """A free-form object: any keys, any values."""

    __slots__ = ()

    def check(self, value: object, resource: str) -> None:
        """Reject anything that is not an object."""
        if value is None:
            return self._null()
        if type(value) is not dict:
            raise FieldError(_NOT_OBJECT)


class Arr(Node):
    """An array whose every element matches ``item``."""

    __slots__ = ("item",)

    def __init__(self, item: Node, nullable: bool = False) -> None:
        super().__init__(nullable)
        self.item = item

    def check(self, value: object, resource: str) -> None:
        """Reject non-arrays, then check each element in order."""
        if value is None:
            return self._null()
        if type(value) is not list:
            raise FieldError(_NOT_ARRAY)
        check = self.item.check
        for index, element in enumerate(value):
            try:
                check(element, resource)
            except FieldError as violation:
                violation.tokens.append(str(index))
                raise


class AnyOf(Node):
    """A value matching at least one of ``options`` (e.g. a latitude string or number)."""

    __slots__ = ("options", "wrong")

    def __init__(self, options: tuple[Node, ...], expected: str, nullable: bool = True) -> None:
        super().__init__(nullable)
        self.options = options
        self.wrong = _message("'{name}' must be " + expected + ".")

    def check(self, value: object, resource: str) -> None:
        """Accept the value if any option does."""
        if value is None:
            return self._null()
        for option in self.options:
            try:
                option.check(value, resource)
            except FieldError:
                continue
            return None
        raise FieldError(self.wrong)


def _wrong_object(_name: str, ptr: str) -> ApiError:
    return invalid_payload(ptr or "/data")


class Obj(Node):
    """An object with declared ``fields``; ``resource`` names the JSON:API resource it starts."""

    __slots__ = ("_required_set", "fields", "required", "resource")

    def __init__(
        self,
        fields: Mapping[str, Node],
        required: tuple[str, ...] = (),
        resource: str | None = None,
        nullable: bool = False,
    ) -> None:
        super().__init__(nullable)
        self.fields = dict(fields)
        self.required = required
        self._required_set = frozenset(required)
        self.resource = resource

    def check(self, value: object, resource: str) -> None:
        """Reject a non-object, unknown keys, then missing keys, then check each child."""
        if value is None:
            return self._null()
        if type(value) is not dict:
            raise FieldError(_wrong_object)
        owner = self.resource or resource
        fields = self.fields
        if not fields.keys() >= value.keys():
            unknown = next(key for key in value if key not in fields)
            raise FieldError(lambda _n, ptr: unknown_field(unknown, owner, ptr), escape(unknown))
        if not value.keys() >= self._required_set:
            missing = next(key for key in self.required if key not in value)
            raise FieldError(lambda _n, ptr: required_field(missing, owner, ptr), missing)
        key = ""
        try:
            for key, item in value.items():
                fields[key].check(item, owner)
        except FieldError as violation:
            violation.tokens.append(key)
            raise
