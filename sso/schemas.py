"""Marshmallow schemas, one per endpoint and input location.

JSON bodies of the service API reject unknown fields (a typo in an
integrator's field name should fail loudly); OAuth parameters ignore unknown
ones, as RFC 6749 §3.1 requires.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates

# $(?!\n), not a bare $: Python's $ also matches before a final newline. (Not \Z: the patterns
# also go into the OpenAPI document, and ECMA-262 regexes have no \Z.)
USER_ID = validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$(?!\n)", error="must be 1-64 characters of A-Z a-z 0-9 _ -")
SESSION_HASH = validate.Regexp(r"^[A-Za-z0-9_-]{43}$(?!\n)", error="must be a base64url SHA-256 hash (43 characters)")
URI = validate.Regexp(r"^[\x21-\x7E]+$(?!\n)", error="must be a URI of printable ASCII characters")
MAX_CLAIMS_BYTES = 4096


class Text(fields.String):
    """A string that is real Unicode text: no lone surrogates (which Redis and JSON
    encoders refuse) and no NUL."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError("must be valid Unicode text") from None
        if "\x00" in text:
            raise ValidationError("must not contain NUL characters")
        return text


MAX_HASHES = 1000
MAX_STATUS_HASHES = 100  # /session/status: one bounded lookup per request


def first_error(messages: Any, path: str = "") -> str:
    """'field: message' for the first problem marshmallow reported."""
    if isinstance(messages, dict):
        key, value = next(iter(messages.items()))
        name = "body" if key == "_schema" else str(key)
        return first_error(value, f"{path}.{name}" if path else name)
    if isinstance(messages, list) and messages:
        return first_error(messages[0], path)
    return f"{path}: {messages}" if path else str(messages)


class ServiceSchema(Schema):
    class Meta:
        unknown = RAISE


class CreateSessionSchema(ServiceSchema):
    user_id = Text(required=True, validate=USER_ID)
    client_ip = Text(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=45),
        metadata={"description": "an IPv4 or IPv6 address"},
    )
    user_agent = Text(load_default=None, allow_none=True, validate=validate.Length(max=512))
    platform = Text(load_default=None, allow_none=True, validate=validate.Length(max=64))
    claims = fields.Dict(
        keys=Text(),
        load_default=None,
        allow_none=True,
        metadata={
            "description": f"a flat object (at most {MAX_CLAIMS_BYTES} bytes) released by /userinfo per scope",
            "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
        },
    )

    @validates("client_ip")
    def _ip(self, value: str | None, **_: Any) -> None:
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValidationError("must be an IPv4 or IPv6 address") from None

    @validates("claims")
    def _claims(self, value: dict[str, Any] | None, **_: Any) -> None:
        if value is None:
            return
        for key, item in value.items():  # flat first: serialising deep nesting could overflow the stack
            if isinstance(item, dict | list):
                raise ValidationError(f"{key}: values must be strings, numbers, booleans or null")
        try:
            encoded = json.dumps(value, separators=(",", ":"), allow_nan=False)
        except ValueError:
            raise ValidationError("must not contain NaN or Infinity") from None
        if len(encoded) > MAX_CLAIMS_BYTES:
            raise ValidationError(f"must serialise to at most {MAX_CLAIMS_BYTES} bytes")


class ValidateSessionSchema(ServiceSchema):
    token_hash = Text(required=True, validate=SESSION_HASH)


class InvalidateSchema(ServiceSchema):
    user_id = Text(required=True, validate=USER_ID)
    session_id_hashes = fields.List(
        Text(validate=SESSION_HASH), required=True, validate=validate.Length(max=MAX_HASHES)
    )


class InvalidateAllSchema(ServiceSchema):
    user_id = Text(required=True, validate=USER_ID)
    except_session_id_hashes = fields.List(
        Text(validate=SESSION_HASH), load_default=list, validate=validate.Length(max=MAX_HASHES)
    )


class SessionStatusSchema(ServiceSchema):
    session_id_hashes = fields.List(
        Text(validate=SESSION_HASH), required=True, validate=validate.Length(min=1, max=MAX_STATUS_HASHES)
    )


class SetCookieSchema(ServiceSchema):
    token = Text(required=True, validate=validate.Length(min=1, max=512))


class LogoutSchema(Schema):
    """POST /logout; the redirect parameters are RP-Initiated Logout 1.0 §2's, sent as a form."""

    class Meta:
        unknown = EXCLUDE

    invalidate = Text(load_default=None, validate=validate.OneOf(["session", "all"]))
    post_logout_redirect_uri = Text(load_default=None, validate=[validate.Length(max=2048), URI])
    state = Text(load_default=None, validate=validate.Length(max=1024))


class UserIdSchema(Schema):
    user_id = Text(required=True, validate=USER_ID)


class OAuthSchema(Schema):
    """RFC 6749 §3.1: unrecognised parameters are ignored."""

    class Meta:
        unknown = EXCLUDE


def _text(limit: int = 2048, *extra: validate.Validator) -> Text:
    return Text(load_default=None, validate=[validate.Length(max=limit), *extra])


class AuthorizeSchema(OAuthSchema):
    response_type = _text(64)
    client_id = _text(64)
    redirect_uri = _text(2048, URI)
    state = _text(1024)
    code_challenge = _text(128)
    code_challenge_method = _text(16)
    scope = _text(512)
    nonce = _text(512)
    prompt = _text(64)
    max_age = fields.Integer(load_default=None, strict=False, validate=validate.Range(min=0))
    # Not OAuth: set by this service in the login return_to (sso/authorization.py).
    auth_after = fields.Integer(load_default=None, strict=False, validate=validate.Range(min=0))
    response_mode = _text(32)
    request = Text(load_default=None)
    request_uri = Text(load_default=None)
    id_token_hint = _text(8192)
    login_hint = _text(256)
    ui_locales = _text(256)


class TokenSchema(OAuthSchema):
    grant_type = _text(64)
    client_id = _text(64)
    code = _text(512)
    redirect_uri = _text()
    code_verifier = _text(256)
    refresh_token = _text(512)
    scope = _text(512)


class TokenInputSchema(OAuthSchema):
    """/introspect and /revoke (RFC 7662 §2.1, RFC 7009 §2.1)."""

    token = Text(required=True, validate=validate.Length(min=1, max=8192))
    token_type_hint = _text(64)
    client_id = _text(64)


class EndSessionSchema(OAuthSchema):
    """OpenID Connect RP-Initiated Logout 1.0 §2."""

    id_token_hint = _text(8192)
    post_logout_redirect_uri = _text(2048, URI)
    state = _text(1024)
    client_id = _text(64)
    logout_hint = _text(256)
    ui_locales = _text(256)
