"""Why bytes did not decode to a type, found by our own checks and never by a decoder's wording.

msgspec decodes the happy path; when it refuses a document, we only use the fact that it did.
Where and why are found here, on the error path alone: UTF-8 by Python's codec, JSON syntax by
the standard library's parser (which reports the position as data), and the decoded value
against the target type's structure as ``msgspec.inspect`` describes it. So the error a client
sees stays the same when a library rewords its messages (msgspec 0.23 did).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any, Literal, Protocol, TypeVar

import msgspec
import msgspec.inspect as mi

from mparticle_klaviyo.errors import InputError, escape_pointer_token

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

ProblemKind = Literal["not_utf8", "too_deep", "not_json_number", "truncated", "trailing", "syntax"]

NOT_UTF8 = "malformed JSON: not valid UTF-8 text"
TOO_DEEP = "malformed JSON: nested too deeply"
LONE_SURROGATE = "malformed JSON: a string holds half of a UTF-16 surrogate pair"
OUT_OF_RANGE = "number out of range"
NOT_A_NUMBER = "malformed JSON: NaN and Infinity are not JSON numbers"
_WHITESPACE = " \t\r\n"


class JsonProblem(msgspec.Struct, frozen=True):
    """What is wrong with a document as JSON text, before any type is considered."""

    kind: ProblemKind
    message: str

    def to_error(self, pointer: str = "") -> InputError:
        """This problem as an ``InputError`` at ``pointer``."""
        return InputError(pointer, self.message)


class _NonJsonConstantError(Exception):
    """``NaN``/``Infinity``: Python's parser accepts them, JSON (and msgspec) does not."""


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its key/value pairs, so repeated keys are all checked, in order."""


class Decoder(Protocol[T_co]):
    """What ``decode_checked`` needs of a decoder: msgspec's ``json.Decoder`` is one."""

    @property
    def type(self) -> Any:
        """The type it decodes to."""

    def decode(self, buf: bytes, /) -> T_co:
        """Decode one document."""


def decode_checked(decoder: Decoder[T], raw: bytes) -> T:
    """Decode ``raw`` with ``decoder``; on failure raise an ``InputError`` that we diagnosed."""
    try:
        return decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise explain(raw, decoder.type) from None
    except RecursionError:  # msgspec raises it outside DecodeError
        raise InputError("", TOO_DEEP) from None


def explain(raw: bytes, target: Any) -> InputError:
    """The first reason, in document order, why ``raw`` is not a JSON document of ``target``."""
    try:
        value = _parse(raw)
    except _InvalidJsonError as invalid:
        return invalid.problem.to_error()
    try:
        found = _lone_surrogate(value, "") or _mismatch(value, _type_info(target), "")
    except RecursionError:  # deeper than our walk can go: deeper than msgspec goes too
        return InputError("", TOO_DEEP)
    if found is None:
        # Our checks found nothing the decoder could object to: say so rather than guess.
        return InputError("", "the document does not have the expected structure")
    return InputError(*found)


def syntax_problem(raw: bytes) -> JsonProblem | None:
    """What keeps ``raw`` from being one JSON value, or None when it is one."""
    try:
        value = _parse(raw)
    except _InvalidJsonError as invalid:
        return invalid.problem
    try:
        lone = _lone_surrogate(value, "")
    except RecursionError:
        return JsonProblem("too_deep", TOO_DEEP)
    return JsonProblem("syntax", LONE_SURROGATE) if lone else None


class _InvalidJsonError(Exception):
    def __init__(self, problem: JsonProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _parse(raw: bytes) -> Any:
    """``raw`` as Python values (objects as ``_Pairs``), or ``_InvalidJsonError`` saying why not."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _InvalidJsonError(JsonProblem("not_utf8", NOT_UTF8)) from None
    try:
        return json.loads(text, object_pairs_hook=_Pairs, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _InvalidJsonError(_syntax(text, exc.pos)) from None
    except _NonJsonConstantError:
        raise _InvalidJsonError(JsonProblem("not_json_number", NOT_A_NUMBER)) from None
    except RecursionError:
        raise _InvalidJsonError(JsonProblem("too_deep", TOO_DEEP)) from None


def _reject_constant(name: str) -> Any:
    raise _NonJsonConstantError(name)


def _syntax(text: str, pos: int) -> JsonProblem:
    """Describe a syntax error at character ``pos`` of ``text`` from the text itself."""
    if not text[pos:].strip(_WHITESPACE):
        return JsonProblem("truncated", "malformed JSON: the document ends early")
    byte = len(text[:pos].encode("utf-8"))
    if _value_ends_before(text, pos):
        return JsonProblem("trailing", f"malformed JSON: text after the JSON value (byte {byte})")
    before = text[:pos].rstrip(_WHITESPACE)
    if text[pos] in "]}" and before.endswith(","):
        comma = len(before.encode("utf-8")) - 1
        return JsonProblem("syntax", f"malformed JSON: trailing comma (byte {comma})")
    return JsonProblem("syntax", f"malformed JSON: unexpected character {text[pos]!r} (byte {byte})")


def _value_ends_before(text: str, pos: int) -> bool:
    """Whether a complete JSON value starts the text and ends before ``pos`` (extra data)."""
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        _, end = json.JSONDecoder().raw_decode(text, start)
    except (json.JSONDecodeError, RecursionError):
        return False
    return end <= pos


@lru_cache(maxsize=64)
def _type_info(target: Any) -> mi.Type:
    return mi.type_info(target)


def _lone_surrogate(value: Any, pointer: str) -> tuple[str, str] | None:
    """(pointer, message) of the first string or key with an unpaired ``\\uD800``-style escape.

    Python's parser keeps such escapes as lone surrogates; they are no text, and msgspec refuses
    them.
    """
    if isinstance(value, str):
        return None if _encodes(value) else (pointer, LONE_SURROGATE)
    if isinstance(value, _Pairs):
        for key, item in value:
            if not _encodes(key):
                return pointer, LONE_SURROGATE
            if found := _lone_surrogate(item, f"{pointer}/{escape_pointer_token(key)}"):
                return found
    elif isinstance(value, list):
        return _first(_lone_surrogate(item, f"{pointer}/{i}") for i, item in enumerate(value))
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _mismatch(value: Any, info: mi.Type, pointer: str) -> tuple[str, str] | None:
    """(pointer, message) of the first place where ``value`` does not fit ``info``, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return pointer, OUT_OF_RANGE  # NaN and Infinity were refused: this one overflowed
    if isinstance(info, mi.UnionType):
        member = next((t for t in info.types if _accepts_kind(t, value)), None)
        if member is None:
            return pointer, _expected(info.types, value)
        info = member
    if not _accepts_kind(info, value):
        return pointer, _expected((info,), value)
    if isinstance(info, mi.StructType):
        return _struct_mismatch(value, info, pointer)
    if isinstance(info, mi.ListType):
        return _first(_mismatch(item, info.item_type, f"{pointer}/{i}") for i, item in enumerate(value))
    if isinstance(info, mi.DictType):
        return _first(_mismatch(item, info.value_type, f"{pointer}/{escape_pointer_token(key)}") for key, item in value)
    return None


def _struct_mismatch(pairs: _Pairs, info: mi.StructType, pointer: str) -> tuple[str, str] | None:
    """Known fields in document order, then the required fields that are absent."""
    fields = {field.encode_name: field for field in info.fields}
    for key, item in pairs:
        field = fields.get(key)
        if field is not None and (found := _mismatch(item, field.type, f"{pointer}/{escape_pointer_token(key)}")):
            return found
    present = {key for key, _ in pairs}
    for field in info.fields:
        if field.required and field.encode_name not in present:
            return f"{pointer}/{escape_pointer_token(field.encode_name)}", "required field is missing"
    return None


def _first(found: Any) -> tuple[str, str] | None:
    return next((f for f in found if f is not None), None)


def _accepts_kind(info: mi.Type, value: Any) -> bool:
    """Whether a JSON value of this kind can be ``info`` at all (contents are checked apart)."""
    if isinstance(info, mi.AnyType | mi.RawType):
        return True
    if isinstance(value, bool):
        return isinstance(info, mi.BoolType)
    if isinstance(value, int):
        return isinstance(info, mi.IntType | mi.FloatType)
    if isinstance(value, float):
        return isinstance(info, mi.FloatType)
    if isinstance(value, str):
        return isinstance(info, mi.StrType)
    if value is None:
        return isinstance(info, mi.NoneType)
    if isinstance(value, _Pairs):
        return isinstance(info, mi.StructType | mi.DictType)
    return isinstance(info, mi.ListType)


def _expected(types: tuple[mi.Type, ...], value: Any) -> str:
    names = " | ".join(dict.fromkeys(_type_name(t) for t in types))
    return f"Expected {names}, got {_kind(value)}"


def _type_name(info: mi.Type) -> str:
    if isinstance(info, mi.StructType | mi.DictType):
        return "object"
    if isinstance(info, mi.ListType):
        return "array"
    if isinstance(info, mi.NoneType):
        return "null"
    if isinstance(info, mi.AnyType | mi.RawType):
        return "any"
    return {mi.IntType: "int", mi.FloatType: "float", mi.StrType: "str", mi.BoolType: "bool"}.get(
        type(info), type(info).__name__.removesuffix("Type").lower()
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, _Pairs):
        return "object"
    if isinstance(value, list):
        return "array"
    return {bool: "bool", int: "int", float: "float", str: "str"}[type(value)]
