"""Minimal HS256 JSON Web Tokens and random codes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from typing import Any, Final

# Characters of user codes: no vowels (no words), no look-alikes (RFC 8628 6.1).
USER_CODE_ALPHABET: Final = "BCDFGHJKLMNPQRSTVWXZ"


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_jwt(claims: dict[str, Any], key: bytes) -> str:
    """Return a compact HS256 JWT carrying `claims`."""
    header = _b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64encode(signature)}"


def decode_jwt(token: str, key: bytes) -> dict[str, Any] | None:
    """Return the claims of a JWT signed with `key`, or None if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    header, payload, signature = parts
    expected = hmac.new(
        key, f"{header}.{payload}".encode("ascii", "replace"), hashlib.sha256
    ).digest()
    try:
        if not hmac.compare_digest(expected, _b64decode(signature)):
            return None
        claims = json.loads(_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def new_secret_token(nbytes: int = 32) -> str:
    """Return a random URL-safe token (device codes, refresh tokens)."""
    return secrets.token_urlsafe(nbytes)


def new_user_code() -> str:
    """Return a random user code like BCDF-GHJK."""
    chars = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
    return f"{chars[:4]}-{chars[4:]}"


def normalize_user_code(text: str) -> str:
    """Return a typed user code in canonical form: upper case, XXXX-XXXX."""
    chars = "".join(ch for ch in text.upper() if ch.isalnum())
    if len(chars) == 8:
        return f"{chars[:4]}-{chars[4:]}"
    return text.strip().upper()
