"""A small OpenID Connect identity provider for tests.

It speaks just enough of the authorization code flow with PKCE (S256) for
the admin console to sign in through it, the way it signs in through
Cognito's Hosted UI: a discovery document, a JWKS, an authorize endpoint
that shows a user picker instead of a password form, and a token endpoint
that returns an RS256 ID token with Cognito's claims (`token_use`,
`custom:tenant_id`, `cognito:groups`, `custom:clearance`).

Everything it is asked at the token endpoint is recorded in
`token_requests`, so a test can assert that the console used PKCE.

    idp = OidcStandIn(client_id="console-client",
                      redirect_uri="http://127.0.0.1:8181/console/callback",
                      users=DEFAULT_USERS)
    idp.start()            # ThreadingHTTPServer on a free loopback port
    ...                    # idp.issuer, idp.mint("acme-admin")
    idp.stop()

Needs PyJWT and cryptography.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass(frozen=True)
class User:
    """A user the picker offers, with the claims their ID token carries."""

    sub: str
    tenant: str
    groups: tuple[str, ...]
    clearance: int


DEFAULT_USERS = (
    User("acme-admin", "acme", ("admin",), 2),
    User("acme-viewer", "acme", ("viewer",), 0),
    User("globex-admin", "globex", ("admin",), 2),
    User("platform-admin", "platform", ("platform-admin",), 3),
)

# The parameters an authorization request carries, kept in the picker's
# hidden fields.
AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
)
CODE_TTL_SECS = 120
TOKEN_TTL_SECS = 3600


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of a verifier (RFC 7636, no padding)."""
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def _int_b64(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


@dataclass
class Grant:
    """An issued authorization code and what it was issued for."""

    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    user: User
    issued: float = field(default_factory=time.monotonic)


class OidcStandIn:
    def __init__(self, client_id: str, redirect_uri: str, users=DEFAULT_USERS, host="127.0.0.1"):
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.users = {u.sub: u for u in users}
        self.host = host
        self.kid = "standin-" + secrets.token_hex(4)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._codes: dict[str, Grant] = {}
        self._lock = threading.Lock()
        # One entry per POST /token: what was sent and what was decided.
        self.token_requests: list[dict] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------

    def start(self) -> "OidcStandIn":
        standin = self

        class Handler(_Handler):
            idp = standin

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="oidc-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.server_address[1]

    @property
    def issuer(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ---- documents ---------------------------------------------------------

    def discovery(self) -> dict:
        i = self.issuer
        return {
            "issuer": i,
            "authorization_endpoint": f"{i}/authorize",
            "token_endpoint": f"{i}/token",
            "jwks_uri": f"{i}/jwks.json",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ["openid", "email", "profile"],
        }

    def jwks(self) -> dict:
        pub = self._key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "kid": self.kid,
                    "alg": "RS256",
                    "use": "sig",
                    "n": _int_b64(pub.n),
                    "e": _int_b64(pub.e),
                }
            ]
        }

    def mint(self, sub: str, nonce: str | None = None, **extra) -> str:
        """An ID token for a configured user, signed with the stand-in's key
        (also handy for calling the management API directly)."""
        user = self.users[sub]
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.client_id,
            "sub": user.sub,
            "token_use": "id",
            "iat": now,
            "auth_time": now,
            "exp": now + TOKEN_TTL_SECS,
            "custom:tenant_id": user.tenant,
            "cognito:groups": list(user.groups),
            "custom:clearance": str(user.clearance),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        claims.update(extra)
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    # ---- the flow ----------------------------------------------------------

    def check_authorize(self, p: dict[str, str]) -> str | None:
        """Why an authorization request is refused, or None."""
        if p.get("client_id") != self.client_id:
            return "unknown client_id"
        if p.get("redirect_uri") != self.redirect_uri:
            return "redirect_uri is not the registered one"
        if p.get("response_type") != "code":
            return "response_type must be code"
        if p.get("code_challenge_method") != "S256":
            return "code_challenge_method must be S256"
        if not p.get("code_challenge"):
            return "code_challenge is missing"
        if "openid" not in p.get("scope", "").split():
            return "scope must include openid"
        return None

    def issue_code(self, p: dict[str, str], sub: str) -> str:
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._codes[code] = Grant(
                client_id=p["client_id"],
                redirect_uri=p["redirect_uri"],
                challenge=p["code_challenge"],
                nonce=p.get("nonce"),
                user=self.users[sub],
            )
        return code

    def exchange(self, form: dict[str, str]) -> tuple[int, dict]:
        """POST /token: (status, JSON). A code is used once, whatever the
        outcome."""
        record = {
            "grant_type": form.get("grant_type"),
            "client_id": form.get("client_id"),
            "redirect_uri": form.get("redirect_uri"),
            "code_verifier": form.get("code_verifier"),
            "pkce_ok": False,
            "user": None,
            "status": 400,
        }
        self.token_requests.append(record)
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        if grant is None or time.monotonic() - grant.issued > CODE_TTL_SECS:
            return 400, {"error": "invalid_grant", "error_description": "unknown, used or expired code"}
        record["user"] = grant.user.sub
        if form.get("client_id") != grant.client_id:
            return 400, {"error": "invalid_grant", "error_description": "client_id mismatch"}
        if form.get("redirect_uri") != grant.redirect_uri:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri mismatch"}
        verifier = form.get("code_verifier") or ""
        # RFC 7636: 43 to 128 unreserved characters.
        if not 43 <= len(verifier) <= 128 or not secrets.compare_digest(s256(verifier), grant.challenge):
            return 400, {"error": "invalid_grant", "error_description": "code_verifier does not match"}
        record["pkce_ok"] = True
        record["status"] = 200
        return 200, {
            "id_token": self.mint(grant.user.sub, nonce=grant.nonce),
            "access_token": secrets.token_urlsafe(32),
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL_SECS,
        }

    def picker_page(self, p: dict[str, str]) -> str:
        hidden = "\n".join(
            f'<input type="hidden" name="{k}" value="{html.escape(p.get(k, ""), quote=True)}">'
            for k in AUTHORIZE_PARAMS
        )
        options = "\n".join(
            f'<option value="{html.escape(u.sub)}">{html.escape(u.sub)} '
            f"({html.escape(u.tenant)}: {html.escape(', '.join(u.groups))})</option>"
            for u in self.users.values()
        )
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · test identity provider</title>
<style>
body {{ font-family: sans-serif; margin: 2rem auto; max-width: 28rem; padding: 0 1rem; }}
label, select, button {{ display: block; width: 100%; margin-top: .5rem; font-size: 1rem; }}
select, button {{ padding: .5rem; box-sizing: border-box; }}
</style></head>
<body>
<h1>Test identity provider</h1>
<p>Signing in to <code>{html.escape(p.get("client_id", ""))}</code>. Choose a user:</p>
<form method="post" action="/authorize">
{hidden}
<label for="idp-user">User</label>
<select id="idp-user" name="user">
{options}
</select>
<button type="submit" id="idp-continue">Continue</button>
</form>
</body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    idp: OidcStandIn  # set on the subclass made in start()
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str, headers=()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _error_page(self, status: int, text: str) -> None:
        self._send(status, f"<!doctype html><title>Error</title><p>{html.escape(text)}</p>".encode(), "text/html; charset=utf-8")

    def _form(self) -> dict[str, str]:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n).decode("utf-8", "replace")
        return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}

    def do_GET(self):
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if url.path == "/.well-known/openid-configuration":
            return self._json(200, self.idp.discovery())
        if url.path == "/jwks.json":
            return self._json(200, self.idp.jwks())
        if url.path == "/authorize":
            why = self.idp.check_authorize(q)
            if why:
                return self._error_page(400, why)
            body = self.idp.picker_page(q).encode()
            return self._send(200, body, "text/html; charset=utf-8")
        self._json(404, {"error": "not_found"})

    def do_POST(self):
        url = urlsplit(self.path)
        form = self._form()
        if url.path == "/authorize":
            why = self.idp.check_authorize(form)
            if why:
                return self._error_page(400, why)
            if form.get("user") not in self.idp.users:
                return self._error_page(400, "unknown user")
            code = self.idp.issue_code(form, form["user"])
            sep = "&" if "?" in form["redirect_uri"] else "?"
            location = form["redirect_uri"] + sep + urlencode({"code": code, "state": form.get("state", "")})
            return self._send(302, b"", "text/plain", [("Location", location)])
        if url.path == "/token":
            status, body = self.idp.exchange(form)
            return self._json(status, body)
        self._json(404, {"error": "not_found"})
