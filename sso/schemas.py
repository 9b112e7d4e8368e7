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

USER_ID = validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$", error="must be 1-64 characters of A-Z a-z 0-9 _ -")
SESSION_HASH = validate.Regexp(r"^[A-Za-z0-9_-]{43}$", error="must be a base64url SHA-256 hash (43 characters)")
MAX_CLAIMS_BYTES = 4096
MAX_HASHES = 1000


class ServiceSchema(Schema):
    class Meta:
        unknown = RAISE


class CreateSessionSchema(ServiceSchema):
    user_id = fields.String(required=True, validate=USER_ID)
    client_ip = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=45))
    user_agent = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=512))
    platform = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))
    claims = fields.Dict(keys=fields.String(), load_default=None, allow_none=True)

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
        if len(json.dumps(value, separators=(",", ":"))) > MAX_CLAIMS_BYTES:
            raise ValidationError(f"must serialise to at most {MAX_CLAIMS_BYTES} bytes")
        for key, item in value.items():
            if isinstance(item, dict | list):
                raise ValidationError(f"{key}: values must be strings, numbers, booleans or null")


class ValidateSessionSchema(ServiceSchema):
    token_hash = fields.String(required=True, validate=SESSION_HASH)


class InvalidateSchema(ServiceSchema):
    user_id = fields.String(required=True, validate=USER_ID)
    session_id_hashes = fields.List(
        fields.String(validate=SESSION_HASH), required=True, validate=validate.Length(max=MAX_HASHES)
    )


class InvalidateAllSchema(ServiceSchema):
    user_id = fields.String(required=True, validate=USER_ID)
    except_session_id_hashes = fields.List(
        fields.String(validate=SESSION_HASH), load_default=list, validate=validate.Length(max=MAX_HASHES)
    )


class SetCookieSchema(ServiceSchema):
    token = fields.String(required=True, validate=validate.Length(min=1, max=512))


class LogoutSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    invalidate = fields.String(load_default=None, validate=validate.OneOf(["session", "all"]))


class UserIdSchema(Schema):
    user_id = fields.String(required=True, validate=USER_ID)
