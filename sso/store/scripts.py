"""The store's Lua scripts: one ``.lua`` file each, read once per process.

``lib.lua`` holds the functions the refresh-family scripts share; it is
prepended to those scripts when they are read, so each is still one
self-contained script on the server (Redis has no script includes).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

LUA_DIR = Path(__file__).parent / "lua"
USES_LIB = frozenset({"redeem_code", "rotate_refresh", "revoke_refresh", "inspect_refresh", "revoke_access"})
NAMES = (
    "create_session",
    "list_sessions",
    "invalidate",
    "touch",
    "issue_code",
    "burn_code",
    "redeem_code",
    "rotate_refresh",
    "revoke_refresh",
    "inspect_refresh",
    "revoke_access",
    "count_failure",
    "append_events",
)


@cache
def source(name: str) -> str:
    text = (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")
    if name in USES_LIB:
        text = (LUA_DIR / "lib.lua").read_text(encoding="utf-8") + "\n" + text
    return text
