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
from redis.exceptions import RedisError

from config import envfile
from config.keygen import env_lines
from config.settings import ConfigError, load_settings
from sso.startup import masked_redis_url

sso = AppGroup("sso", help="Fluxer SSO operator commands.")


def _services():  # type: ignore[no-untyped-def]
    return current_app.extensions["sso"]


@sso.command("keys")
def keys() -> None:
    """Print a fresh RSA-2048 key pair and a service secret as .env lines."""
    click.echo(env_lines(), nl=False)


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
    except RedisError as exc:
        click.echo(f"redis unreachable at {masked_redis_url(settings.redis_url)}: {type(exc).__name__}", err=True)
        sys.exit(2)
    click.echo(f"redis OK: {masked_redis_url(settings.redis_url)}")


sso.add_command(check_config)


@sso.command("sessions")
@click.argument("user_id")
def list_sessions(user_id: str) -> None:
    """List a user's live sessions, most recently active first (JSON lines)."""
    for session in _services().sessions.list_for_user(user_id):
        click.echo(json.dumps(session.to_json()))


@sso.command("end-session")
@click.argument("user_id")
@click.argument("session_id_hashes", nargs=-1, required=True)
def end_session(user_id: str, session_id_hashes: tuple[str, ...]) -> None:
    """End sessions of a user by session_id_hash; publishes session-invalidated."""
    svc = _services()
    ended = svc.sessions.invalidate(user_id, list(session_id_hashes), actor="cli")
    flushed = svc.worker.flush()
    click.echo(json.dumps({"invalidated": ended, "events_published": flushed}))


@sso.command("end-all")
@click.argument("user_id")
@click.option("--except", "keep", multiple=True, help="A session_id_hash to keep (repeatable).")
def end_all(user_id: str, keep: tuple[str, ...]) -> None:
    """End every session of a user; publishes global-logout."""
    svc = _services()
    ended = svc.sessions.invalidate_all(user_id, list(keep), actor="cli")
    flushed = svc.worker.flush()
    click.echo(json.dumps({"invalidated": ended, "events_published": flushed}))


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
