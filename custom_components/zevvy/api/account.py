"""Which account a login belongs to, from the claims the identity server gives.

Access tokens are opaque to clients (RFC 6749): Keycloak's happen to be JWTs,
other providers' are random strings. The account is read, in this order, from
the access token's claims when it is a JWT with a subject, from the OpenID
Connect ID token, or from the userinfo endpoint (ZevvyAuth.async_account).

No signature is verified: both tokens come straight from the token endpoint over
TLS, where OpenID Connect Core 3.1.3.7 lets a client rely on TLS instead. The ID
token's issuer and audience are checked (cheap, and they catch a token meant for
another client or server); the claims only name and identify the account.
"""

from __future__ import annotations

import base64
import binascii
import json

from ._http import get_str
from .exceptions import ZevvyError
from .models import Account, Tokens


def jwt_claims(token: str) -> dict[str, object] | None:
    """Return the claims of a JWT (unverified), or None if it is none."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[1]:
        return None
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims: object = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def account_from_claims(claims: object) -> Account | None:
    """Return the account named by OpenID claims, or None without a subject."""
    sub = get_str(claims, "sub")
    if sub is None:
        return None
    return Account(
        sub=sub,
        username=get_str(claims, "preferred_username"),
        email=get_str(claims, "email"),
    )


def account_from_access_token(access_token: str) -> Account:
    """Read the account from a JWT access token; raise ZevvyError if it has none."""
    claims = jwt_claims(access_token)
    if claims is None:
        raise ZevvyError("The access token is not a readable JWT")
    if (account := account_from_claims(claims)) is None:
        raise ZevvyError("The access token has no subject (sub)")
    return account


def account_from_id_token(id_token: str, issuer: str, client_id: str) -> Account | None:
    """Read the account from an ID token meant for this client from this issuer."""
    claims = jwt_claims(id_token)
    if claims is None:
        return None
    if (get_str(claims, "iss") or "").rstrip("/") != issuer.rstrip("/"):
        return None
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if client_id not in audiences:
        return None
    return account_from_claims(claims)


def account_from_tokens(tokens: Tokens, issuer: str, client_id: str) -> Account | None:
    """Return the account the access token's claims name, else the ID token's."""
    claims = jwt_claims(tokens.access_token)
    if claims is not None and (account := account_from_claims(claims)):
        return account
    if tokens.id_token is None:
        return None
    return account_from_id_token(tokens.id_token, issuer, client_id)
