"""Request bodies sent without a Content-Length (chunked), read whole before anything acts on them.

Werkzeug holds such a body to MAX_CONTENT_LENGTH by cutting it short: its
``LimitedStream(is_max=True)`` stops at the limit and raises only on a further
read, so a view would act on the first 64 KiB of a larger body. ``refusal`` reads
at most limit + 1 bytes up front instead. Within the limit the body is kept in
memory and the request goes on as one sent with that Content-Length (as nginx
forwards it); over the limit, or cut off, the refusal waits in the environ for
the request hook (sso/http.py) to raise, so it is rendered as every other 413.
"""

from __future__ import annotations

import io
from typing import Any

from werkzeug.wsgi import get_content_length

from sso import errors

REFUSED = "sso.body_refused"  # environ key: the error that refuses the request's body


def refusal(environ: dict[str, Any], limit: int) -> errors.SSOError | None:
    """Why the request's body is refused, or None: a Content-Length over ``limit``, or a chunked body
    that is, once read (then it gets its length), or that is malformed. The one check of the body
    limit, for sso/fastpath.py and the request hook alike; a chunked body is read once per request.

    An HTTP/1.1 request has a body only with Content-Length or Transfer-Encoding
    (RFC 9112 §6.3), and it is safe to read without a length only when the server
    has de-chunked it (``wsgi.input_terminated``, as gunicorn does); Werkzeug
    reads it on the same condition.
    """
    if (
        "HTTP_TRANSFER_ENCODING" not in environ
        or "wsgi.input_terminated" not in environ
        or get_content_length(environ) is not None
    ):
        refused: errors.SSOError | None = environ.get(REFUSED)
        length = get_content_length(environ)  # Werkzeug's reading: None when absent, 0 when malformed
        if refused is None and length is not None and length > limit:
            refused = errors.PayloadTooLarge()
        return refused
    del environ["HTTP_TRANSFER_ENCODING"]  # the body is de-chunked: it now has a Content-Length
    stream, chunks, size = environ["wsgi.input"], [], 0
    refusal: errors.SSOError | None
    try:
        while size <= limit and (chunk := stream.read(limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    except Exception:  # noqa: BLE001 - the client went away or sent a malformed chunk (gunicorn's
        # parse errors are not OSErrors, so Werkzeug's stream let them through as a 500): a 400
        refusal = errors.InvalidRequest()
    else:
        refusal = errors.PayloadTooLarge() if size > limit else None
    body = b"".join(chunks) if refusal is None else b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    if refusal is not None:
        environ[REFUSED] = refusal
    return refusal
