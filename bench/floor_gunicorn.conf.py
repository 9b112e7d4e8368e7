"""gunicorn settings for the floor app: deploy/gunicorn.conf.py's, without its SSO hooks.

Every plain setting of the deployed config (worker class, worker_connections,
keepalive, timeouts, request limits, bind from SSO_PORT, workers from
SSO_WORKERS) is copied from that file as it is, so the floor cannot drift from
what the service runs under. Left out: the hooks (they start the SSO app's
background worker and metrics), ``logger_class`` and ``logconfig_dict`` (the
floor writes no log lines; the service's JSON access log is part of what the
service costs over the floor).
"""

import runpy
from pathlib import Path

_DEPLOYED = runpy.run_path(str(Path(__file__).resolve().parent.parent / "deploy" / "gunicorn.conf.py"))
_LEFT_OUT = {"logconfig_dict", "logger_class"}

for _name, _value in _DEPLOYED.items():
    if _name.startswith("_") or _name in _LEFT_OUT or callable(_value) or type(_value).__name__ == "module":
        continue
    globals()[_name] = _value
