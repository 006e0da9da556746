"""Keyed hashes for secrets that are looked up or compared, never shown again."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata

from core.settings import Settings


def keyed_hash(settings: Settings, purpose: str, value: str) -> str:
    """HMAC-SHA256 under the service's secret key, separated by purpose."""
    key = hmac.new(settings.secret_key.encode(), purpose.encode(), hashlib.sha256).digest()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def normalize_document(document_number: str) -> str:
    """A passport series+number or INN as digits and letters only, upper case."""
    text = unicodedata.normalize("NFKC", document_number).upper()
    return "".join(ch for ch in text if ch.isalnum())


def document_hash(settings: Settings, document_number: str) -> str:
    return keyed_hash(settings, "document", normalize_document(document_number))


def security_code_hash(settings: Settings, code: str) -> str:
    return keyed_hash(settings, "security-code", code.strip())


def new_security_code() -> str:
    """Eight digits, printed on the paper contract."""
    return f"{secrets.randbelow(10**8):08d}"


def token_hash(token: str) -> str:
    """Tokens are 256 random bits: a plain SHA-256 is enough to store them."""
    return hashlib.sha256(token.encode()).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_temporary_password() -> str:
    """20 characters from an unambiguous alphabet (~100 bits): typed once, then changed."""
    alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(5)) for _ in range(4))


def new_numeric_code(digits: int = 6) -> str:
    return f"{secrets.randbelow(10**digits):0{digits}d}"
