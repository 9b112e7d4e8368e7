"""gunicorn settings for Fluxer SSO: gevent workers, per-worker background loop.

Environment: SSO_BIND (default 127.0.0.1:$SSO_PORT, or unix:/path), SSO_PORT
(8090), SSO_WORKERS (default: the core count), SSO_WORKER_CONNECTIONS (1000),
SSO_GRACEFUL_TIMEOUT (30), SSO_FORWARDED_ALLOW_IPS (127.0.0.1,::1),
SSO_LOG_LEVEL (info). A bad value of any of them, like a bad setting of the
app, stops gunicorn with one line naming the variable, never a traceback.

``preload_app`` stays off: each worker imports the app after gevent has
patched it, and starts its own background greenlet in ``post_worker_init``;
``worker_exit`` flushes pending activity and events on every graceful stop
(SIGTERM, SIGHUP reload, max_requests restart).
"""

import glob
import os
import sys
import tempfile
from typing import NoReturn

from dotenv import load_dotenv
from gunicorn import glogging

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _stop(variable: str, problem: str) -> NoReturn:
    """The one line an invalid configuration gets. SystemExit passes gunicorn's config loader,
    which turns any other exception into "Failed to read config file" and a traceback."""
    print(f"fluxer-sso: invalid configuration: {variable}: {problem}", file=sys.stderr)
    sys.exit(1)


def _int_env(name: str, default: int, *, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) < minimum:
        _stop(name, f"must be a {'positive' if minimum else 'non-negative'} integer, got {raw!r}")
    return int(raw)


def _log_level() -> str:
    raw = os.environ.get("SSO_LOG_LEVEL", "").strip() or "info"
    if raw.lower() not in LOG_LEVELS:
        _stop("SSO_LOG_LEVEL", f"must be {', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]}, got {raw!r}")
    return raw.lower()


load_dotenv(os.environ.get("SSO_ENV_FILE", ".env"))

bind = os.environ.get("SSO_BIND") or f"127.0.0.1:{os.environ.get('SSO_PORT') or '8090'}"
worker_class = "gevent"
workers = _int_env("SSO_WORKERS", os.cpu_count() or 1, minimum=1)
worker_connections = _int_env("SSO_WORKER_CONNECTIONS", 1000, minimum=1)
preload_app = False
graceful_timeout = _int_env("SSO_GRACEFUL_TIMEOUT", 30, minimum=0)
timeout = 30
keepalive = 5
forwarded_allow_ips = os.environ.get("SSO_FORWARDED_ALLOW_IPS") or "127.0.0.1,::1"
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
control_socket_disable = True  # no gunicornc control socket: one fixed path would clash between instances
# The app writes one JSON access-log line per request (sso/http.py), so gunicorn's
# own access log stays off and its error log uses the same JSON formatter.
accesslog = None


class AppWritesAccessLog(glogging.Logger):
    """gunicorn's logger without its access log, which the app writes itself.

    With ``logconfig_dict`` set, gunicorn treats its access log as enabled and, for
    every request, builds the access-log atoms and a log record for the silenced
    ``gunicorn.access`` logger below: about 8% of the CPU of a cheap request, for no
    output (docs/benchmarks.md). Nothing else changes.
    """

    def access(self, resp, req, environ, request_time):  # noqa: ARG002 - gunicorn's signature
        return


logger_class = AppWritesAccessLog
errorlog = "-"
loglevel = _log_level()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request": {"()": "sso.logs.RequestContextFilter"}},
    "formatters": {"json": {"()": "sso.logs.JsonFormatter"}},
    "handlers": {
        "json": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request"],
            "stream": "ext://sys.stderr",
        },
    },  # fmt: skip
    "root": {"level": loglevel.upper(), "handlers": ["json"]},
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["json"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
    },
}


def on_starting(server):  # noqa: ARG001 - gunicorn hook signature
    """Validate the configuration once in the master, and prepare multiprocess metrics."""
    from config.settings import ConfigError, load_settings

    try:
        load_settings(os.environ)
    except ConfigError as exc:
        _stop(exc.variable, exc.problem)
    # prometheus_client's multiprocess mode: every worker writes its values under
    # this directory; /metrics sums them. It must be set before workers import it.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="fluxer-sso-metrics-")
    os.makedirs(directory, exist_ok=True)
    for stale in glob.glob(os.path.join(directory, "*.db")):
        os.remove(stale)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory


def child_exit(server, worker):  # noqa: ARG001 - gunicorn hook signature
    """Drop a dead worker's live gauges from the metrics (counters are kept)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    """Start the worker's background greenlet, and say once what this worker runs with."""
    from sso.startup import log_start

    services = worker.wsgi.extensions["sso"]
    services.worker.start()
    kids = [services.keys.kid] + [k["kid"] for k in services.keys.jwks["keys"] if k["kid"] != services.keys.kid]
    log_start(services.settings, kids, workers=worker.cfg.workers, binds=worker.cfg.bind)


def worker_exit(server, worker):  # noqa: ARG001 - gunicorn hook signature
    app = getattr(worker, "wsgi", None)
    if app is not None and "sso" in getattr(app, "extensions", {}):
        app.extensions["sso"].worker.stop()
