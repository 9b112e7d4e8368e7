"""Operator commands: ``flask --app wsgi sso <command>``.

They use the same services as the HTTP API, so ending sessions here publishes
the same events. The commands do not start the background worker; they flush
its queue before returning instead.
"""

from __future__ import annotations

import json
import os
import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from redis.exceptions import RedisClusterException, RedisError

from config import envfile
from config.keygen import env_lines, generate_key_pair
from config.settings import ConfigError, Settings, load_settings
from sso import events
from sso.startup import masked_redis_url
from sso.tokens import signed_token_lifetimes

sso = AppGroup("sso", help="Fluxer SSO operator commands.")
# A session_id_hash or user id may begin with "-": taken as an argument, not an unknown option.
ARGUMENTS_MAY_START_WITH_DASH = {"ignore_unknown_options": True}
# Seconds the shipped nginx site (deploy/nginx) caches discovery and the JWKS: a verifier may
# hold a set that old for SSO_JWKS_MAX_AGE more, so the rotation waits for both.
EDGE_CACHE_TTL = 60


def _services():  # type: ignore[no-untyped-def]
    return current_app.extensions["sso"]


@sso.command("keys")
def keys() -> None:
    """Print a fresh RSA-2048 key pair and a service secret as .env lines."""
    click.echo(env_lines(), nl=False)


def _env_value(pems: list[str]) -> str:
    """PEM blocks as one quoted .env value with \\n escapes, as `sso keys` writes them."""
    return '"' + "\\n".join(pem.strip().replace("\n", "\\n") for pem in pems) + '"'


def rotation_plan(settings: Settings, new_private: str, new_public: str) -> str:
    """The signing-key rotation as .env lines and comments, wait times from ``settings``."""
    old_public, earlier = settings.jwt_public_key, list(settings.jwt_extra_public_keys)
    lifetimes = signed_token_lifetimes(settings)
    longest = max(lifetimes.values())
    signed = ", ".join(f"{kind} {seconds} s" for kind, seconds in lifetimes.items())
    lines = [
        "# Signing key rotation, without a flag day (README: Rotating the signing key).",
        "# Step 1. Publish the next key: keep SSO_JWT_PRIVATE_KEY and SSO_JWT_PUBLIC_KEY as they are,",
        "# set this line, and reload every instance:",
        f"SSO_JWT_EXTRA_PUBLIC_KEYS={_env_value([new_public, *earlier])}",
        f"# Step 2. Wait at least {settings.jwks_max_age + EDGE_CACHE_TTL} s after the last instance reloaded,",
        f"# SSO_JWKS_MAX_AGE ({settings.jwks_max_age} s) plus the {EDGE_CACHE_TTL} s the nginx site (deploy/nginx)",
        "# caches the JWKS: every JWKS an API instance has cached then holds the next key.",
        "# Step 3. Switch the signing key, keep the old public key published, reload every instance:",
        f"SSO_JWT_PRIVATE_KEY={_env_value([new_private])}",
        f"SSO_JWT_PUBLIC_KEY={_env_value([new_public])}",
        f"SSO_JWT_EXTRA_PUBLIC_KEYS={_env_value([old_public, *earlier])}",
        f"# Step 4. Wait at least {longest} s after the last instance reloaded: the longest token the old",
        f"# key signed ({signed}). Then drop the old key and reload:",
        f"SSO_JWT_EXTRA_PUBLIC_KEYS={_env_value(earlier) if earlier else ''}",
        "# After step 4 an id_token_hint the old key signed is refused at GET /logout (POST /logout",
        "# needs no hint). Refresh tokens are not JWTs and keep working throughout.",
    ]
    if earlier:
        lines.append("# The extra keys configured today are kept in every step; drop each once its own wait is over.")
    return "\n".join(lines) + "\n"


@sso.command("rotate-keys")
def rotate_keys() -> None:
    """Print a fresh key pair and the rotation steps, with waits from this configuration."""
    click.echo(rotation_plan(_services().settings, *generate_key_pair()), nl=False)


@click.command("check-config")
@click.option(
    "--env-file",
    "env_file",
    metavar="PATH",
    help="Check the environment a service started from PATH gets (systemd's EnvironmentFile, "
    "compose's env_file): PATH's variables over this shell's, without this directory's .env.",
)
def check_config(env_file: str | None) -> None:
    """Validate the configuration and reach its Redis, without starting the service."""
    from app import create_app  # the factory imports this module: import it only when run

    if env_file:
        try:
            env = envfile.environment_with(env_file)
        except FileNotFoundError:
            click.echo(f"no such file: {env_file}", err=True)
            sys.exit(1)
        source = f"environment + {env_file}"
    else:
        env = dict(os.environ)
        source = f"environment + {envfile.LOADED.path}" if envfile.LOADED.path else "environment"
    click.echo(f"configuration from: {source}")
    try:
        settings = load_settings(env)
    except ConfigError as exc:
        click.echo(f"invalid configuration: {exc}", err=True)
        sys.exit(1)
    click.echo(f"configuration OK: issuer {settings.issuer}, clients {', '.join(settings.clients)}, "
               f"redis {masked_redis_url(settings.redis_url)}")  # fmt: skip
    try:
        create_app(settings).extensions["sso"].store.ping()
    except (RedisError, RedisClusterException) as exc:
        click.echo(f"redis unreachable at {masked_redis_url(settings.redis_url)}: {type(exc).__name__}", err=True)
        sys.exit(2)
    click.echo(f"redis OK: {masked_redis_url(settings.redis_url)}")


sso.add_command(check_config)


@sso.command("sessions", context_settings=ARGUMENTS_MAY_START_WITH_DASH)
@click.argument("user_id")
def list_sessions(user_id: str) -> None:
    """List a user's live sessions, most recently active first (JSON lines)."""
    for session in _services().sessions.list_for_user(user_id):
        click.echo(json.dumps(session.to_json()))


@sso.command("end-session", context_settings=ARGUMENTS_MAY_START_WITH_DASH)
@click.argument("user_id")
@click.argument("session_id_hashes", nargs=-1, required=True)
def end_session(user_id: str, session_id_hashes: tuple[str, ...]) -> None:
    """End sessions of a user by session_id_hash; publishes session-invalidated."""
    svc = _services()
    ended = svc.sessions.invalidate(user_id, list(session_id_hashes), reason=events.ADMIN, actor="cli")
    flushed = svc.worker.flush()
    click.echo(json.dumps({"invalidated": ended, "events_published": flushed}))


@sso.command("end-all", context_settings=ARGUMENTS_MAY_START_WITH_DASH)
@click.argument("user_id")
@click.option("--except", "keep", multiple=True, help="A session_id_hash to keep (repeatable).")
def end_all(user_id: str, keep: tuple[str, ...]) -> None:
    """End every session of a user; publishes global-logout."""
    svc = _services()
    ended = svc.sessions.invalidate_all(user_id, list(keep), actor="cli")
    flushed = svc.worker.flush()
    click.echo(json.dumps({"invalidated": ended, "events_published": flushed}))


@sso.command("purge-legacy")
@click.option("--dry-run", is_flag=True, help="Only count the keys.")
def purge_legacy_keys(dry_run: bool) -> None:
    """Delete the first version's keys after an upgrade (its sessions cannot be carried over)."""
    from sso.store.legacy import purge_legacy

    svc = _services()
    count = purge_legacy(svc.redis, svc.settings.redis_prefix, dry_run=dry_run)
    click.echo(json.dumps({"legacy_keys": count, "deleted": 0 if dry_run else count}))


def config_error_app(error: ConfigError) -> Flask:
    """What ``flask --app wsgi`` gets when the configuration is invalid: ``sso keys``
    still works (it is how a first configuration is made) and ``sso check-config``
    names the problem; every other command fails with it."""
    app = Flask("fluxer-sso-unconfigured")
    group = AppGroup("sso", help=f"Fluxer SSO operator commands (configuration invalid: {error}).")
    group.add_command(keys)
    group.add_command(check_config)  # reloads the configuration itself, so it names the problem
    app.cli.add_command(group)
    return app
