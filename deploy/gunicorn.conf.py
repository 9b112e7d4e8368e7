"""gunicorn settings for Fluxer SSO: gevent workers, per-worker background loop.

Environment: SSO_BIND (default 127.0.0.1:$SSO_PORT, or unix:/path), SSO_PORT
(8090), SSO_WORKERS (default: the core count), SSO_WORKER_CONNECTIONS (1000),
SSO_GRACEFUL_TIMEOUT (30), SSO_FORWARDED_ALLOW_IPS (127.0.0.1,::1).

``preload_app`` stays off: each worker imports the app after gevent has
patched it, and starts its own background greenlet in ``post_worker_init``;
``worker_exit`` flushes pending activity and events on every graceful stop
(SIGTERM, SIGHUP reload, max_requests restart).
"""

import os
import sys

from dotenv import load_dotenv

load_dotenv(os.environ.get("SSO_ENV_FILE", ".env"))

bind = os.environ.get("SSO_BIND") or f"127.0.0.1:{os.environ.get('SSO_PORT') or '8090'}"
worker_class = "gevent"
workers = int(os.environ.get("SSO_WORKERS") or os.cpu_count() or 1)
worker_connections = int(os.environ.get("SSO_WORKER_CONNECTIONS") or 1000)
preload_app = False
graceful_timeout = int(os.environ.get("SSO_GRACEFUL_TIMEOUT") or 30)
timeout = 30
keepalive = 5
forwarded_allow_ips = os.environ.get("SSO_FORWARDED_ALLOW_IPS") or "127.0.0.1,::1"
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
control_socket_disable = True  # no gunicornc control socket: one fixed path would clash between instances
accesslog = None
errorlog = "-"
loglevel = os.environ.get("SSO_LOG_LEVEL", "info")


def on_starting(server):  # noqa: ARG001 - gunicorn hook signature
    """Validate the configuration once in the master: one clear line, then exit."""
    from config.settings import ConfigError, load_settings

    try:
        load_settings(os.environ)
    except ConfigError as exc:
        print(f"fluxer-sso: invalid configuration: {exc}", file=sys.stderr)
        sys.exit(1)


def post_worker_init(worker):
    worker.wsgi.extensions["sso"].worker.start()


def worker_exit(server, worker):  # noqa: ARG001 - gunicorn hook signature
    app = getattr(worker, "wsgi", None)
    if app is not None and "sso" in getattr(app, "extensions", {}):
        app.extensions["sso"].worker.stop()
