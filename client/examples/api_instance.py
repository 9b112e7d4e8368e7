"""A minimal Fluxer API instance: a protected route, and session events closing WebSockets.

    SSO_ISSUER=https://sso.example SSO_SERVICE_SECRET=... REDIS_URL=redis://... \
        gunicorn -k gevent -b 127.0.0.1:8000 api_instance:app
"""

import os

from flask import Flask, jsonify
from fluxer_sso_client import FluxerSSO
from fluxer_sso_client.flask import current_token

sso = FluxerSSO(
    issuer=os.environ["SSO_ISSUER"],
    service_url=os.environ.get("SSO_SERVICE_URL"),  # default: the issuer
    service_secret=os.environ["SSO_SERVICE_SECRET"],
    redis_url=os.environ["REDIS_URL"],
    redis_prefix=os.environ.get("SSO_REDIS_PREFIX", "sso:"),
)
app = Flask(__name__)


@sso.on("session-invalidated")
@sso.on("global-logout")
def close_websockets(event):
    for sid in event.session_id_hashes:  # a real instance closes the sockets it holds for sid
        print(f"closing WebSockets of session {sid} ({event.type}, {event.reason})", flush=True)


@app.get("/me")
@sso.require_token(scope="profile")
def me():
    return jsonify(user_id=current_token().sub)


sso.start()  # one listener per worker process: imported after gevent patched it
