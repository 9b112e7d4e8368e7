"""The nginx site (deploy/nginx) in front of a real gunicorn, over HTTPS on loopback."""

from __future__ import annotations

import http.client
import json
import ssl
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis as redis_lib
import requests

from tests.conftest import SERVICE_SECRET, make_settings
from tests.nginx_server import NginxServer, nginx_binary
from tests.redis_server import free_port
from tests.server import GunicornServer, server_env
from tests.waiting import wait_for

pytestmark = pytest.mark.skipif(
    nginx_binary() is None, reason="no nginx binary (Debian: apt-get install nginx; .ci/run installs it)"
)

HEADERS = {"Authorization": f"Service {SERVICE_SECRET}"}
DENIED = {
    "error": "access_denied",
    "error_description": "This endpoint is reachable only from the internal network.",
}
SERVICE_ENDPOINTS = [
    ("POST", "/session/create"),
    ("POST", "/session/validate"),
    ("GET", "/session/list/42"),
    ("POST", "/session/invalidate"),
    ("POST", "/session/invalidate-all"),
    ("POST", "/introspect"),
    ("GET", "/metrics"),
    ("GET", "/not-a-listed-path"),
]
BROWSER_ENDPOINTS = [
    ("POST", "/session/set-cookie"),
    ("GET", "/authorize"),
    ("POST", "/token"),
    ("GET", "/userinfo"),
    ("POST", "/revoke"),
    ("POST", "/logout"),
    ("GET", "/.well-known/openid-configuration"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/_health"),
]


@pytest.fixture(scope="module")
def https_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def gunicorn(redis_url: str, key_pair: tuple[str, str], https_port: int) -> Iterator[GunicornServer]:
    """One gunicorn for the module, its issuer the HTTPS origin nginx serves."""
    prefix = f"t{uuid.uuid4().hex[:12]}:"
    settings = make_settings(redis_url, prefix, key_pair)
    server = GunicornServer(server_env(settings, SSO_ISSUER=f"https://127.0.0.1:{https_port}"), workers=1)
    server.start()
    yield server
    server.stop()
    client = redis_lib.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="module")
def nginx(gunicorn: GunicornServer, https_port: int) -> Iterator[NginxServer]:
    """The site as shipped: 127.0.0.1 is an internal network."""
    server = NginxServer(gunicorn.port, https_port=https_port)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def nginx_outside(gunicorn: GunicornServer) -> Iterator[NginxServer]:
    """The site with loopback removed from the internal networks: the test client is outside."""
    server = NginxServer(gunicorn.port, allow_loopback=False)
    server.start()
    yield server
    server.stop()


def create_session(nginx: NginxServer) -> dict:
    response = nginx.request("POST", "/session/create", json={"user_id": "42"}, headers=HEADERS)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_site_passes_the_config_test_without_warnings(nginx):
    """`nginx -t` accepts the shipped site and prints no warning."""
    assert "test is successful" in nginx.config_test_output
    assert "[warn]" not in nginx.config_test_output, nginx.config_test_output


def test_health_is_served_over_https_with_security_headers(nginx):
    """/_health answers through TLS with HSTS and the API security headers, and nginx hides its version."""
    response = nginx.request("GET", "/_health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Server"] == "nginx"


def test_plain_http_redirects_to_https(nginx):
    """The plain-HTTP server only redirects to the same path and query over HTTPS."""
    response = requests.get(f"http://127.0.0.1:{nginx.http_port}/_health?a=1", allow_redirects=False, timeout=10)
    assert response.status_code == 301
    assert response.headers["Location"] == "https://127.0.0.1/_health?a=1"


def test_service_api_works_from_an_internal_network(nginx):
    """From 127.0.0.1, an internal network as shipped, a session is created and validated through nginx."""
    body = create_session(nginx)
    response = nginx.request("POST", "/session/validate", json={"token_hash": body["session_id_hash"]}, headers=HEADERS)
    assert response.status_code == 200
    assert response.json()["valid"] is True


@pytest.mark.parametrize(("method", "path"), SERVICE_ENDPOINTS)
def test_service_endpoints_are_denied_outside_the_internal_networks(nginx_outside, method, path):
    """Outside the internal networks the service API answers nginx's 403 JSON, the secret notwithstanding."""
    response = nginx_outside.request(method, path, json={"user_id": "42"}, headers=HEADERS)
    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == DENIED
    assert "Strict-Transport-Security" in response.headers


@pytest.mark.parametrize(("method", "path"), BROWSER_ENDPOINTS)
def test_browser_endpoints_stay_public_outside_the_internal_networks(nginx_outside, method, path):
    """Browser-facing paths reach the application from anywhere: its own answer, not nginx's deny rule."""
    response = nginx_outside.request(method, path)
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() != DENIED
    if path == "/_health":
        assert response.status_code == 200


def test_dot_segments_cannot_reach_the_service_api(nginx_outside):
    """A public prefix followed by ../ is matched after normalisation, so it is still denied."""
    context = ssl.create_default_context(cafile=str(nginx_outside.cert))
    for path in ("/_health/../session/create", "/.well-known/../session/create", "/session/set-cookie/../create"):
        connection = http.client.HTTPSConnection("127.0.0.1", nginx_outside.https_port, context=context, timeout=10)
        connection.request(
            "POST", path, body=b'{"user_id": "42"}', headers={**HEADERS, "Content-Type": "application/json"}
        )
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())) == (403, DENIED), path
        connection.close()


def test_set_cookie_is_secure_and_logout_from_the_issuer_ends_the_session(nginx):
    """Through nginx the SSO cookie is Secure and HttpOnly, and a logout from the https issuer origin ends it."""
    session = create_session(nginx)
    response = nginx.request(
        "POST", "/session/set-cookie", json={"token": session["token"]}, headers={"Origin": "http://app.test"}
    )
    assert response.status_code == 204
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__flx_sso_session=")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    response = nginx.request(
        "POST",
        "/logout",
        data={"invalidate": "session"},
        headers={"Origin": nginx.url, "Cookie": f"__flx_sso_session={session['token']}"},
    )
    assert response.status_code == 204
    response = nginx.request(
        "POST", "/session/validate", json={"token_hash": session["session_id_hash"]}, headers=HEADERS
    )
    assert response.json() == {"valid": False}


def test_the_application_sees_the_https_url_the_client_used(nginx, gunicorn):
    """Behind nginx the app builds absolute URLs from https and the client's host:port (ProxyFix in wsgi.py)."""
    # Werkzeug answers a doubled slash inside a route with a redirect to an
    # absolute URL built from request.scheme and request.host. gunicorn alone
    # already takes the scheme from nginx at 127.0.0.1 (forwarded_allow_ips);
    # without ProxyFix the host would lose the client's port.
    response = nginx.request("GET", "/session//list/42")
    assert response.status_code == 308
    assert response.headers["Location"] == f"{nginx.url}/session/list/42"
    direct = requests.get(f"{gunicorn.url}/session//list/42", allow_redirects=False, timeout=10)
    assert direct.headers["Location"] == f"{gunicorn.url}/session/list/42"


def test_oversized_body_is_refused_by_nginx_as_json(nginx):
    """A body over 64 KiB gets nginx's own 413, as JSON, before it reaches the application."""
    response = nginx.request(
        "POST", "/session/create", data=b"x" * (65 * 1024), headers={**HEADERS, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "The request body is larger than 64 KiB.",
    }


def test_unreachable_upstream_answers_json_not_html():
    """With nothing behind it nginx answers 502 with a JSON error body, never its HTML page."""
    server = NginxServer(free_port())  # nothing listens on the upstream port
    server.start()
    try:
        response = server.request("GET", "/_health")
    finally:
        server.stop()
    assert response.status_code == 502
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {
        "error": "temporarily_unavailable",
        "error_description": "The service is temporarily unavailable.",
    }


def test_query_strings_stay_out_of_the_access_log(nginx):
    """The access log records a request's path and status but never its query string."""
    marker = uuid.uuid4().hex
    before = nginx.read_log("access.log")
    assert nginx.request("GET", f"/_health?id_token_hint={marker}").status_code == 200
    # nginx writes the line just after answering
    log = wait_for(lambda: (text := nginx.read_log("access.log")) != before and text, timeout=5, what="the log line")
    new_lines = log[len(before) :]
    assert '"GET /_health HTTP/1.1" 200' in new_lines
    assert marker not in log


def test_whole_oauth_flow_through_nginx_uses_the_https_issuer(nginx, https_port):
    """authorize -> token -> refresh over HTTPS through nginx: the public https issuer is in redirects and tokens."""
    import base64
    from urllib.parse import parse_qs, urlsplit

    from sso.cookies import COOKIE_NAME
    from tests.conftest import CHALLENGE, REDIRECT_URI, VERIFIER

    issuer = f"https://127.0.0.1:{https_port}"
    discovery = nginx.request("GET", "/.well-known/openid-configuration").json()
    assert discovery["issuer"] == issuer and discovery["token_endpoint"] == f"{issuer}/token"
    session = create_session(nginx)
    cookie = nginx.request("POST", "/session/set-cookie", json={"token": session["token"]})
    assert cookie.status_code == 204 and "Secure" in cookie.headers["Set-Cookie"]

    login = nginx.request("GET", "/authorize", params={
        "response_type": "code", "client_id": "fluxer", "redirect_uri": REDIRECT_URI, "state": "s",
        "code_challenge": CHALLENGE, "code_challenge_method": "S256", "scope": "openid"})  # fmt: skip
    assert login.status_code == 302  # no cookie sent: to the login page, returning to the https issuer
    return_to = parse_qs(urlsplit(login.headers["Location"]).query)["return_to"][0]
    assert return_to.startswith(f"{issuer}/authorize?")

    authorized = nginx.request("GET", urlsplit(return_to).path + "?" + urlsplit(return_to).query,
                               cookies={COOKIE_NAME: session["token"]})  # fmt: skip
    assert authorized.status_code == 302
    reply = parse_qs(urlsplit(authorized.headers["Location"]).query)
    assert reply["iss"] == [issuer] and reply["state"] == ["s"]

    tokens = nginx.request("POST", "/token", data={
        "grant_type": "authorization_code", "code": reply["code"][0], "redirect_uri": REDIRECT_URI,
        "code_verifier": VERIFIER, "client_id": "fluxer"})  # fmt: skip
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()

    def claims(jwt: str) -> dict:
        return json.loads(base64.urlsafe_b64decode(jwt.split(".")[1] + "=="))

    assert claims(body["access_token"])["iss"] == issuer and claims(body["id_token"])["iss"] == issuer
    refreshed = nginx.request("POST", "/token", data={
        "grant_type": "refresh_token", "refresh_token": body["refresh_token"], "client_id": "fluxer"})  # fmt: skip
    assert refreshed.status_code == 200 and claims(refreshed.json()["access_token"])["iss"] == issuer
    userinfo = nginx.request(
        "GET", "/userinfo", headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    )
    assert userinfo.status_code == 200 and userinfo.json()["sub"] == "42"


class ClosingUpstream:
    """An upstream that accepts each connection and closes it unanswered (nginx: "upstream prematurely closed")."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:  # closed by stop()
                return
            connection.close()

    def stop(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("upstream", ["refused", "closed"])
def test_upstream_errors_keep_tokens_out_of_the_error_log(upstream):
    """A 502 at /logout or /authorize leaves no id_token_hint, state or nonce in nginx's logs; others still log."""
    closing = ClosingUpstream() if upstream == "closed" else None
    server = NginxServer(closing.port if closing else free_port())
    server.start()
    marks = {name: f"{name}-{uuid.uuid4().hex}" for name in ("id_token_hint", "state", "nonce")}
    try:
        assert server.request("GET", "/logout", params=marks).status_code == 502
        assert server.request("GET", "/authorize", params={**marks, "client_id": "fluxer"}).status_code == 502
        assert server.request("POST", "/logout", data=marks, headers={"Origin": "http://app.test"}).status_code == 502
        assert server.request("POST", "/token", data={"grant_type": "x"}).status_code == 502
        # nginx logs the /token failure as usual: the log is written and the operator still sees upstream trouble
        error_log = wait_for(lambda: "/token" in (text := server.read_log("error.log")) and text,
                             timeout=5, what="the /token upstream error")  # fmt: skip
        access_log = wait_for(lambda: (text := server.read_log("access.log")).count("\n") >= 4 and text,
                              timeout=5, what="four access-log lines")  # fmt: skip
    finally:
        server.stop()
        if closing:
            closing.stop()
    assert "upstream" in error_log
    for mark in marks.values():
        assert mark not in error_log and mark not in access_log
    assert '"GET /logout HTTP/1.1" 502' in access_log and '"GET /authorize HTTP/1.1" 502' in access_log


def test_service_revoke_is_not_reachable_from_outside(nginx_outside):
    """From the internet /revoke with Authorization: Service gets nginx's 403 whatever the secret: no oracle."""
    wrong = {"Authorization": "Service wrong-secret-wrong-secret-wrong-secret"}
    for headers in (HEADERS, wrong, {"Authorization": "service"}):
        response = nginx_outside.request("POST", "/revoke", data={"token": "x"}, headers=headers)
        assert (response.status_code, response.json()) == (403, DENIED)
    public = nginx_outside.request("POST", "/revoke", data={"token": "x", "client_id": "fluxer"})
    assert public.status_code == 200
    basic = nginx_outside.request(
        "POST", "/revoke", data={"token": "x", "client_id": "fluxer"}, headers={"Authorization": "Basic Zmx1eGVyOg=="}
    )
    assert basic.status_code == 200  # a client library's Basic header is no service login


def test_the_internal_revoke_location_is_not_reachable_directly(nginx):
    """The location that carries service revocations is internal: asked for by name it is nginx's 404, as JSON."""
    response = nginx.request("POST", "/_fluxer_sso_service_revoke", data={"token": "x"}, headers=HEADERS)
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "error_description": "No such endpoint."}


def test_service_revoke_works_from_an_internal_network(nginx):
    """API instances on the internal networks revoke any token with the service secret, through nginx."""
    assert nginx.request("POST", "/revoke", data={"token": "x"}, headers=HEADERS).status_code == 200
    wrong = {"Authorization": "Service wrong-secret-wrong-secret-wrong-secret"}
    response = nginx.request("POST", "/revoke", data={"token": "x"}, headers=wrong)
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_invented_methods_do_not_grow_the_metrics(nginx):
    """Random request methods through nginx collapse into one method label, so clients cannot add series."""
    import random
    import string

    rng = random.Random(7)
    for _ in range(60):
        method = "".join(rng.choices(string.ascii_uppercase, k=8))
        nginx.request(method, "/_health")
    text = nginx.request("GET", "/metrics", headers=HEADERS).text
    methods = {
        line.split('method="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith("sso_http_requests_total{")
    }
    assert "other" in methods and methods <= {"GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE", "PATCH", "other"}


# -- discovery and the JWKS from nginx's cache ---------------------------------------------

CACHED = ["/.well-known/openid-configuration", "/.well-known/jwks.json"]


def app_requests(gunicorn: GunicornServer, endpoint: str, method: str = "GET", status: str = "200") -> int:
    """How many requests the application itself answered for ``endpoint``: its Prometheus counter, from gunicorn."""
    response = requests.get(f"{gunicorn.url}/metrics", headers=HEADERS, timeout=10)
    assert response.status_code == 200, response.text
    wanted = {"endpoint": endpoint, "method": method, "status": status}
    total = 0.0
    for line in response.text.splitlines():
        if not line.startswith("sso_http_requests_total{"):
            continue
        labels_text, value = line[len("sso_http_requests_total{") :].rsplit("} ", 1)
        labels = dict(part.split("=", 1) for part in labels_text.split(","))
        if {k: v.strip('"') for k, v in labels.items()} == wanted:
            total += float(value)
    return int(total)


@pytest.fixture
def fresh_nginx(gunicorn: GunicornServer) -> Iterator[NginxServer]:
    """The shipped site with an empty cache of its own (the module's nginx is warmed by other tests)."""
    server = NginxServer(gunicorn.port)
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("path", CACHED)
def test_discovery_and_jwks_are_answered_from_nginx_without_the_application(fresh_nginx, gunicorn, path):
    """After the first GET, 200 more are nginx's: same body and headers as the app's, one app request in all."""
    direct = requests.get(f"{gunicorn.url}{path}", timeout=10)
    before = app_requests(gunicorn, path)
    with requests.Session() as client:  # verify per request: a session's verify loses to REQUESTS_CA_BUNDLE
        answers = [client.get(f"{fresh_nginx.url}{path}", verify=str(fresh_nginx.cert), timeout=10) for _ in range(201)]
    assert app_requests(gunicorn, path) - before == 1  # the first; 200 answers reached no Python
    for response in answers:
        assert response.status_code == 200 and response.content == direct.content
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["Access-Control-Allow-Origin"] == "*"  # browser apps fetch these cross-origin
        assert response.headers["Cache-Control"] == direct.headers["Cache-Control"]
        assert response.headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"
        assert "X-Request-ID" not in response.headers  # a cached answer belongs to no one request
        assert "Set-Cookie" not in response.headers
    hits = [line for line in fresh_nginx.read_log("access.log").splitlines() if f" {path} " in line]
    assert [line.rsplit(" ", 1)[1] for line in hits] == ["MISS"] + ["HIT"] * 200


def test_concurrent_first_requests_reach_the_application_once(fresh_nginx, gunicorn):
    """proxy_cache_lock: 30 clients asking a cold cache at once cost the application one request."""
    path = "/.well-known/jwks.json"
    before = app_requests(gunicorn, path)
    with ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(lambda _: fresh_nginx.request("GET", path).status_code, range(30)))
    assert statuses == [200] * 30
    assert app_requests(gunicorn, path) - before == 1


@pytest.mark.parametrize("path", CACHED)
def test_clients_cannot_bypass_or_poison_the_cache(fresh_nginx, gunicorn, path):
    """no-cache, Pragma, cookies, credentials, query strings, another Host or a HEAD: all answered from the cache."""
    direct = requests.get(f"{gunicorn.url}{path}", timeout=10)
    assert fresh_nginx.request("GET", path, headers={"X-Request-ID": "poisoned-request-id"}).status_code == 200
    before = app_requests(gunicorn, path)
    attempts = [
        {"headers": {"Cache-Control": "no-cache"}},
        {"headers": {"Cache-Control": "no-store, max-age=0"}},
        {"headers": {"Pragma": "no-cache"}},
        {"headers": {"Cookie": "__flx_sso_session=x; other=y"}},
        {"headers": {"Authorization": f"Service {SERVICE_SECRET}"}},
        {"headers": {"Host": "evil.example"}},
        {"headers": {"If-None-Match": '"x"', "If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}},
        {"params": {"v": uuid.uuid4().hex}},
    ]
    for kwargs in attempts:
        response = fresh_nginx.request("GET", path, **kwargs)
        assert (response.status_code, response.content) == (200, direct.content), kwargs
        assert "X-Request-ID" not in response.headers  # the first client's id is not handed to others
    head = fresh_nginx.request("HEAD", path, headers={"Cache-Control": "no-cache"})
    assert head.status_code == 200 and head.headers["Content-Type"] == "application/json"
    assert app_requests(gunicorn, path) - before == 0
    assert app_requests(gunicorn, path, method="HEAD") == 0  # nginx asks with GET; HEAD never reached the app


@pytest.mark.parametrize("path", CACHED)
def test_post_is_not_cached_and_does_not_spoil_the_cache(fresh_nginx, gunicorn, path):
    """POST goes to the application every time (its 405), and the GET after it is still the cached 200."""
    direct = requests.get(f"{gunicorn.url}{path}", timeout=10)
    assert fresh_nginx.request("GET", path).status_code == 200
    # Routing refuses the method before a rule matches, so the app counts these 405s as "unmatched".
    before = app_requests(gunicorn, "unmatched", method="POST", status="405")
    for _ in range(5):
        response = fresh_nginx.request("POST", path, data=b"x")
        assert response.status_code == 405 and response.headers["Content-Type"] == "application/json"
    assert app_requests(gunicorn, "unmatched", method="POST", status="405") - before == 5
    gets = app_requests(gunicorn, path)
    response = fresh_nginx.request("GET", path)
    assert (response.status_code, response.content) == (200, direct.content)
    assert app_requests(gunicorn, path) == gets


def test_other_endpoints_are_never_cached(fresh_nginx, gunicorn):
    """/_health, /session/validate and other /.well-known/ paths reach the application on every request."""
    health = app_requests(gunicorn, "/_health")
    validate = app_requests(gunicorn, "/session/validate", method="POST")
    unmatched = app_requests(gunicorn, "unmatched", status="404")
    for _ in range(5):
        assert fresh_nginx.request("GET", "/_health").status_code == 200
        response = fresh_nginx.request("POST", "/session/validate", json={"token_hash": "x" * 43}, headers=HEADERS)
        assert response.status_code == 200
        assert fresh_nginx.request("GET", "/.well-known/other").status_code == 404
    assert app_requests(gunicorn, "/_health") - health == 5
    assert app_requests(gunicorn, "/session/validate", method="POST") - validate == 5
    assert app_requests(gunicorn, "unmatched", status="404") - unmatched == 5


def test_the_cache_expires_after_its_ttl(gunicorn):
    """After the TTL nginx asks the application again (here 1 s instead of 60 s), once, then serves that answer.

    The first request after expiry waits for that fresh answer: an expired entry is never handed out
    while the application is up (it could be as old as the cache's "inactive" time, longer than the
    key rotation's wait allows; found in review)."""
    path = "/.well-known/jwks.json"
    server = NginxServer(gunicorn.port, replacements={"proxy_cache_valid 200 60s;": "proxy_cache_valid 200 1s;"})
    server.start()
    try:
        before = app_requests(gunicorn, path)
        assert server.request("GET", path).status_code == 200
        assert app_requests(gunicorn, path) - before == 1
        time.sleep(3.5)  # nginx counts whole seconds: 1 s is fresh until the clock passes the next one
        assert server.request("GET", path).status_code == 200
        assert app_requests(gunicorn, path) - before == 2  # fetched for this very request, not in the background
        assert server.read_log("access.log").split()[-1] == "EXPIRED"
        for _ in range(5):
            assert server.request("GET", path).status_code == 200
        assert app_requests(gunicorn, path) - before == 2
    finally:
        server.stop()


def test_deleting_the_cache_files_makes_nginx_ask_again(fresh_nginx, gunicorn):
    """The emergency rotation's purge (README): with the cache files deleted the next GET reaches the application."""
    path = "/.well-known/jwks.json"
    before = app_requests(gunicorn, path)
    assert fresh_nginx.request("GET", path).status_code == 200
    assert fresh_nginx.request("GET", path).status_code == 200
    assert app_requests(gunicorn, path) - before == 1
    files = [entry for entry in (fresh_nginx.dir / "cache").rglob("*") if entry.is_file()]
    assert files  # the cache lives where the site says, as files
    for entry in files:
        entry.unlink()
    assert fresh_nginx.request("GET", path).status_code == 200
    assert app_requests(gunicorn, path) - before == 2
    assert "[crit]" not in fresh_nginx.read_log("error.log")


def test_a_rotation_restart_reaches_clients_within_the_ttl_and_an_outage_serves_the_last_set(
    redis_url, redis, prefix, key_pair
):
    """Step 1 of a rotation through nginx (TTL 1 s here): gunicorn away, the last set; back with a new key, it."""
    from config.keygen import generate_key_pair

    path = "/.well-known/jwks.json"
    settings = make_settings(redis_url, prefix, key_pair)  # the redis fixture removes the prefix's keys after
    before = GunicornServer(server_env(settings), workers=1)
    before.start()
    server = NginxServer(before.port, replacements={"proxy_cache_valid 200 60s;": "proxy_cache_valid 200 1s;"})
    server.start()
    after: GunicornServer | None = None
    try:
        old_set = server.request("GET", path).content
        before.stop()
        time.sleep(2.5)  # expired, and nothing listens: the last good answer, not a 502
        for _ in range(3):
            response = server.request("GET", path)
            assert (response.status_code, response.content) == (200, old_set)
        after = GunicornServer(server_env(settings, SSO_JWT_EXTRA_PUBLIC_KEYS=generate_key_pair()[1]), workers=1)
        after.port, after.env["SSO_PORT"] = before.port, str(before.port)  # the restart, on the same address
        after.start()
        new_set = requests.get(f"{after.url}{path}", timeout=10).content
        assert len(json.loads(new_set)["keys"]) == 2 and new_set != old_set
        # the first request after the restart may get the old set while it refreshes; within a TTL, the new one
        wait_for(lambda: server.request("GET", path).content == new_set, timeout=5, what="the published next key")
    finally:
        server.stop()
        before.stop()
        if after is not None:
            after.stop()
