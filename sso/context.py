"""What the OAuth services share, passed as one argument."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from config.settings import Settings
from sso.clients import ClientRegistry
from sso.store import RedisStore
from sso.worker import BackgroundWorker


@dataclass(frozen=True)
class OAuthContext:
    store: RedisStore
    clients: ClientRegistry
    worker: BackgroundWorker
    settings: Settings
    clock: Callable[[], float] = field(default=time.time)
