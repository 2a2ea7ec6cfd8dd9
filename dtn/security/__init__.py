"""BPSec (RFC 9172) with the RFC 9173 default contexts, keyrings and the security policy.

Sans-I/O except `keyfile`, the one module that reads and writes key files.
"""

from .aes_gcm import AesVariant
from .asb import AbstractSecurityBlock
from .bpsec import Accepted, KeyLookup, accept, add_bcb, add_bib
from .errors import KeyringError, PolicyError, Reason, SecurityError
from .hmac_sha2 import ShaVariant
from .keyfile import load_keyring
from .keyring import Keyring
from .policy import SecurityPolicy, SecurityRule
from .scope import FULL_SCOPE, Scope

__all__ = [
    "FULL_SCOPE",
    "AbstractSecurityBlock",
    "Accepted",
    "AesVariant",
    "KeyLookup",
    "Keyring",
    "KeyringError",
    "PolicyError",
    "Reason",
    "Scope",
    "SecurityError",
    "SecurityPolicy",
    "SecurityRule",
    "ShaVariant",
    "accept",
    "add_bcb",
    "add_bib",
    "load_keyring",
]
