"""gunicorn's entry point: ``gunicorn -c deploy/gunicorn.conf.py wsgi:app``,
and the Flask CLI's: ``flask --app wsgi sso --help``.

gevent patches the standard library before anything else imports sockets
(gunicorn's gevent worker patches too; patching twice is harmless). The
background worker is started by gunicorn's ``post_worker_init`` hook in each
worker, never here.

The service runs behind exactly one proxy, nginx (deploy/nginx), which sets
X-Forwarded-For, -Proto and -Host; ProxyFix (installed by create_app) trusts that one hop, so
``request.remote_addr``, ``request.scheme`` and ``request.host`` are the
client's. gunicorn must therefore be reachable only through that proxy.
"""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from flask import Flask  # noqa: E402

from app import create_app  # noqa: E402
from config import envfile  # noqa: E402
from config.settings import ConfigError, load_settings  # noqa: E402
from sso.cli import config_error_app  # noqa: E402
from sso.logs import configure_logging, lean_records  # noqa: E402

envfile.load()
if not logging.getLogger().handlers:  # gunicorn's logconfig_dict has set JSON logging already
    configure_logging(os.environ.get("SSO_LOG_LEVEL", "info"))
lean_records()


def _load() -> Flask:
    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        if os.path.basename(sys.argv[0]) == "flask":  # let `flask sso keys/check-config` run
            return config_error_app(exc)
        print(f"fluxer-sso: invalid configuration: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    return create_app(settings, trusted_proxies=1)


app = _load()
