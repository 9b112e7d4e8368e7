"""Where the configuration came from: the process environment plus one dotenv file.

The entry points (``wsgi.py``) load the file through :func:`load`, which
remembers which variables the file added. ``flask --app wsgi sso
check-config --env-file PATH`` can then check the environment another process
runs with (systemd's ``EnvironmentFile``, compose's ``env_file``) instead of
the one this shell and its ``.env`` would give.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from dotenv import dotenv_values, load_dotenv


@dataclass
class Loaded:
    """The dotenv file this process read (if any) and the variables it added."""

    path: str | None = None
    added: frozenset[str] = field(default_factory=frozenset)


LOADED = Loaded()


def default_path() -> str:
    """``SSO_ENV_FILE``, else ``.env`` in the working directory (what the entry points read)."""
    return os.environ.get("SSO_ENV_FILE", ".env")


def load(path: str | None = None) -> None:
    """python-dotenv into ``os.environ`` (never overriding a set variable), remembering what it added."""
    path = path or default_path()
    before = set(os.environ)
    load_dotenv(path)
    LOADED.path = path
    LOADED.added = frozenset(set(os.environ) - before)


def environment_with(path: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment without what our own dotenv load added, then ``path``'s values over it.

    The file wins over the shell: a service started from it (systemd, compose)
    never sees this shell's variables. A missing file raises FileNotFoundError.
    """
    if not os.path.isfile(path) and path != os.devnull:
        raise FileNotFoundError(path)
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if k not in LOADED.added}
    env.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    return env
