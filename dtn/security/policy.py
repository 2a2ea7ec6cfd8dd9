"""The security policy: which bundles get which BCB and BIB, with which keys (sans-I/O).

In the node config (TOML) it is the `[security]` table:

    [security]
    keyfile = "/etc/dtn/keys.toml"     # read by the node with keyfile.load_keyring

    [[security.rule]]
    destination = "ipn:2.*"            # bundles this node sends to these endpoints ...
    source = "ipn:2.*"                 # ... and bundles it receives from these (either or both)
    bcb = "A256GCM"                    # A128GCM | A256GCM (BCB-AES-GCM), optional
    bib = "HMAC-SHA-384"               # HMAC-SHA-256 | -384 | -512 (BIB-HMAC-SHA2), optional
    key = "mars-link"                  # the BCB key, or the BIB key when there is no BCB
    bib_key = "mars-sign"              # the BIB key when the rule has both (must differ)
    scope = 7                          # RFC 9173 scope flags, 0..7 (default 7: everything)
    key_wrap = false                   # true: a fresh key per bundle, wrapped under `key`

Patterns are shell globs (fnmatch, case-sensitive) on the EID text. The first rule whose
`destination` matches a bundle's destination protects what is sent; the first rule whose
`source` matches an EID says what a bundle from it must carry, and holds the keys for security
blocks whose security source it matches.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass

from dtn.bundle import EID, BlockType

from .aes_gcm import AesVariant
from .errors import PolicyError
from .hmac_sha2 import ShaVariant
from .keyring import Keyring, check_key_id
from .keywrap import KEY_ENCRYPTION_KEY_SIZES
from .scope import FULL_SCOPE

BCB_NAMES = {"A128GCM": AesVariant.A128GCM, "A256GCM": AesVariant.A256GCM}
BIB_NAMES = {
    "HMAC-SHA-256": ShaVariant.HMAC_SHA_256,
    "HMAC-SHA-384": ShaVariant.HMAC_SHA_384,
    "HMAC-SHA-512": ShaVariant.HMAC_SHA_512,
}
_NAMES = {variant: name for name, variant in (*BCB_NAMES.items(), *BIB_NAMES.items())}
_RULE_FIELDS = {"destination", "source", "bcb", "bib", "key", "bib_key", "scope", "key_wrap"}
_SECTION_FIELDS = {"keyfile", "rule"}
_LOOKUP_CACHE_MAX = 4096
_BCB = BlockType.BCB  # read once: a lookup on the enum class is slow


@dataclass(frozen=True, slots=True)
class SecurityRule:
    destination: str | None = None
    source: str | None = None
    bcb: AesVariant | None = None
    bib: ShaVariant | None = None
    key: str | None = None
    bib_key: str | None = None
    scope: int = FULL_SCOPE
    key_wrap: bool = False

    def key_id(self, service: BlockType) -> str | None:
        """The key id this rule uses for a service (BlockType.BCB or BIB), None if it has none."""
        if service == _BCB:
            return self.key if self.bcb is not None else None
        if self.bib is None:
            return None
        return self.bib_key if self.bcb is not None else self.key

    def describe(self) -> str:
        """The rule's services as the config names them, e.g. 'BCB A256GCM + BIB HMAC-SHA-384'."""
        services = []
        if self.bcb is not None:
            services.append(f"BCB {_NAMES[self.bcb]}")
        if self.bib is not None:
            services.append(f"BIB {_NAMES[self.bib]}")
        return " + ".join(services)


class SecurityPolicy:
    """An ordered list of rules, with cached lookups by EID."""

    def __init__(
        self, rules: list[SecurityRule] | tuple[SecurityRule, ...] = (), keyfile: str | None = None
    ) -> None:
        self.rules = tuple(rules)
        self.keyfile = keyfile
        self._outbound = _Matcher([(rule.destination, rule) for rule in self.rules])
        self._inbound = _Matcher([(rule.source, rule) for rule in self.rules])

    @classmethod
    def from_config(cls, section: Mapping | None) -> SecurityPolicy:
        """The policy from the node config's `[security]` table (None or empty: no security)."""
        if section is None:
            return cls()
        if not isinstance(section, Mapping):
            raise PolicyError("[security] must be a table")
        unknown = set(section) - _SECTION_FIELDS
        if unknown:
            raise PolicyError(
                f"[security]: unknown entries {sorted(unknown)} "
                f"(expected {sorted(_SECTION_FIELDS)})"
            )
        keyfile = section.get("keyfile")
        if keyfile is not None and not isinstance(keyfile, str):
            raise PolicyError("[security] keyfile must be a path string")
        rules = section.get("rule", [])
        if not isinstance(rules, list):
            raise PolicyError("[security] rule must be an array of tables: [[security.rule]]")
        return cls(
            [_parse_rule(rule, f"security.rule[{index}]") for index, rule in enumerate(rules)],
            keyfile,
        )

    def outbound(self, destination: EID) -> SecurityRule | None:
        """The rule for a bundle sent to `destination`, if any."""
        return self._outbound.lookup(destination)

    def inbound(self, source: EID) -> SecurityRule | None:
        """The rule for bundles and security blocks from `source`, if any."""
        return self._inbound.lookup(source)

    def check_keys(self, keyring: Keyring) -> None:
        """PolicyError naming every rule whose keys are missing or the wrong size, so a node
        finds out at start and not at its first bundle."""
        problems = []
        for index, rule in enumerate(self.rules):
            for service, needs in (
                (BlockType.BCB, _bcb_key_sizes(rule)),
                (BlockType.BIB, _bib_key_sizes(rule)),
            ):
                key_id = rule.key_id(service)
                if key_id is None:
                    continue
                key = keyring.get(key_id)
                if key is None:
                    problems.append(
                        f"security.rule[{index}]: key {key_id!r} is not in the key file"
                    )
                elif needs and len(key) not in needs:
                    problems.append(
                        f"security.rule[{index}]: key {key_id!r} is {len(key)} "
                        f"bytes, {service.name} here needs "
                        f"{' or '.join(map(str, needs))}"
                    )
        if problems:
            raise PolicyError("; ".join(problems))


class _Matcher:
    """First-match glob lookup, cached per EID (a node talks to few endpoints)."""

    def __init__(self, patterns: list[tuple[str | None, SecurityRule]]) -> None:
        self._patterns = [
            (re.compile(fnmatch.translate(pattern)), rule)
            for pattern, rule in patterns
            if pattern is not None
        ]
        self._cache: dict[EID, SecurityRule | None] = {}

    def lookup(self, eid: EID) -> SecurityRule | None:
        try:
            return self._cache[eid]
        except KeyError:
            pass
        text = str(eid)
        found = next((rule for pattern, rule in self._patterns if pattern.match(text)), None)
        if len(self._cache) >= _LOOKUP_CACHE_MAX:
            self._cache.clear()
        self._cache[eid] = found
        return found


def _bcb_key_sizes(rule: SecurityRule) -> tuple[int, ...]:
    if rule.bcb is None:
        return ()
    return KEY_ENCRYPTION_KEY_SIZES if rule.key_wrap else (rule.bcb.key_size,)


def _bib_key_sizes(rule: SecurityRule) -> tuple[int, ...]:
    return KEY_ENCRYPTION_KEY_SIZES if rule.bib is not None and rule.key_wrap else ()


def _parse_rule(table: object, where: str) -> SecurityRule:
    if not isinstance(table, Mapping):
        raise PolicyError(f"{where} must be a table")
    unknown = set(table) - _RULE_FIELDS
    if unknown:
        raise PolicyError(
            f"{where}: unknown entries {sorted(unknown)} (expected some of {sorted(_RULE_FIELDS)})"
        )
    destination = _pattern(table, "destination", where)
    source = _pattern(table, "source", where)
    if destination is None and source is None:
        raise PolicyError(f"{where}: give a destination pattern, a source pattern, or both")
    bcb = _choice(table, "bcb", BCB_NAMES, where)
    bib = _choice(table, "bib", BIB_NAMES, where)
    if bcb is None and bib is None:
        raise PolicyError(
            f"{where}: name a bcb ({', '.join(BCB_NAMES)}), a bib ({', '.join(BIB_NAMES)}), or both"
        )
    key = _key_id(table, "key", where)
    if key is None:
        raise PolicyError(f"{where}: 'key' (a key id from the key file) is required")
    bib_key = _key_id(table, "bib_key", where)
    if bcb is not None and bib is not None:
        if bib_key is None or bib_key == key:
            raise PolicyError(
                f"{where}: with both bcb and bib, give the BIB its own key "
                "(bib_key, different from key): one key must not serve two "
                "algorithms"
            )
    elif bib_key is not None:
        raise PolicyError(f"{where}: bib_key is only for rules with both bcb and bib; use key")
    scope = table.get("scope", FULL_SCOPE)
    if not isinstance(scope, int) or isinstance(scope, bool) or not 0 <= scope <= FULL_SCOPE:
        raise PolicyError(f"{where}: scope must be an integer 0..7 (RFC 9173 scope flags)")
    key_wrap = table.get("key_wrap", False)
    if not isinstance(key_wrap, bool):
        raise PolicyError(f"{where}: key_wrap must be true or false")
    return SecurityRule(destination, source, bcb, bib, key, bib_key, scope, key_wrap)


def _pattern(table: Mapping, name: str, where: str) -> str | None:
    value = table.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise PolicyError(f"{where}: {name} must be a non-empty EID pattern such as 'ipn:2.*'")
    return value


def _choice(table: Mapping, name: str, choices: dict, where: str):
    value = table.get(name)
    if value is None:
        return None
    if value not in choices:
        raise PolicyError(f"{where}: {name} = {value!r} is not one of {', '.join(choices)}")
    return choices[value]


def _key_id(table: Mapping, name: str, where: str) -> str | None:
    value = table.get(name)
    if value is None:
        return None
    try:
        return check_key_id(value)
    except ValueError as exc:
        raise PolicyError(f"{where}: {name}: {exc}") from None
