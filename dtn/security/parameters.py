"""The parameters both RFC 9173 contexts carry: a variant, a wrapped key and scope flags.

BIB-HMAC-SHA2 (3.3) and BCB-AES-GCM (4.3) number them differently but read and write them
alike; a `SharedParameters` holds one context's numbering and does that reading and writing.
Off the fast paths: a template writes its parameters once, and the payload pipeline reads them
only from a sender it has no template for yet.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Generic, TypeVar

from .asb import Value
from .errors import Reason, SecurityError
from .scope import FULL_SCOPE, check_scope

V = TypeVar("V", bound=IntEnum)


class SharedParameters(Generic[V]):
    """One context's ids for the shared parameters, its defaults, and how its messages name
    them."""

    __slots__ = (
        "_context",
        "_default",
        "_variant_id",
        "_wrapped_key_id",
        "_scope_id",
        "_ids",
        "_variants",
        "_variant_name",
        "_known_variants",
    )

    def __init__(
        self,
        context: str,
        default_variant: V,
        *,
        variant_id: int,
        wrapped_key_id: int,
        scope_id: int,
        other_ids: tuple[int, ...] = (),
        variant_name: str,
        known_variants: str,
    ) -> None:
        """`context` and `variant_name` ("SHA") name the context and its variants in messages,
        `known_variants` lists the variant ids RFC 9173 defines; `other_ids` are the context's
        own parameters, read by the context itself."""
        self._context, self._default = context, default_variant
        self._variant_id, self._wrapped_key_id = variant_id, wrapped_key_id
        self._scope_id = scope_id
        self._ids = frozenset((variant_id, wrapped_key_id, scope_id, *other_ids))
        enum = type(default_variant)
        self._variants = {int(variant): variant for variant in enum}  # a dict beats an enum call
        self._variant_name, self._known_variants = variant_name, known_variants

    def check_ids(self, parameters: dict[int, Value], what: str) -> None:
        """SecurityError for a parameter id the context does not define."""
        if not parameters.keys() <= self._ids:
            unknown = sorted(parameters.keys() - self._ids)
            raise SecurityError(
                Reason.MALFORMED, f"{what}: unknown {self._context} parameter ids {unknown}"
            )

    def read(self, parameters: dict[int, Value], what: str) -> tuple[V, int, bytes | None]:
        """(variant, scope, wrapped key or None), with RFC 9173's defaults for absent ones."""
        value = parameters.get(self._variant_id, self._default)
        variant = self._variants.get(value)
        if variant is None:
            raise SecurityError(
                Reason.UNSUPPORTED_CONTEXT,
                f"{what}: unknown {self._variant_name} variant {value!r} "
                f"(RFC 9173 knows {self._known_variants})",
            )
        wrapped = parameters.get(self._wrapped_key_id)
        if wrapped is not None and not isinstance(wrapped, bytes):
            raise SecurityError(Reason.MALFORMED, f"{what}: the wrapped key must be a byte string")
        return variant, check_scope(parameters.get(self._scope_id, FULL_SCOPE), what), wrapped

    def write(
        self, leading: dict[int, Value], variant: V, scope: int, wrapped_key: bytes | None
    ) -> dict[int, Value]:
        """`leading` (the context's own parameters, with lower ids), then the shared ones in id
        order; the wrapped key only when there is one."""
        leading[self._variant_id] = int(variant)
        if wrapped_key is not None:
            leading[self._wrapped_key_id] = wrapped_key
        leading[self._scope_id] = scope
        return leading
