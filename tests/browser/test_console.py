#!/usr/bin/env python3
"""The admin console in a real browser: headless Chromium driven by Selenium.

Starts, on free loopback ports in a temporary directory, an OpenID Connect
stand-in issuer (oidc_standin.py), `cedargate-admin serve` with the console
signing in through it, and a `cedargate serve` sidecar (trusted identity) on
the same store; then signs in through the authorization code flow and works
the console like a person would, checking after each step what the sidecar
decides, what the audit log says and what the browser was given. Every page
is also photographed at desktop and phone width.

    python tests/browser/test_console.py [--bin target/debug] [--keep]

Prints one line per check; exits non-zero if any failed. Screenshots go to
$SCREENSHOT_DIR (or a new directory under /tmp), printed at the end.
Run it through scripts/test-browser.sh, which installs what it needs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download

import requests
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

sys.dont_write_bytecode = True  # no __pycache__ beside the tests
sys.path.insert(0, str(Path(__file__).resolve().parent))
from oidc_standin import OidcStandIn, s256  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CLIENT_ID = "console-client"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
SIZES = {"desktop": (1280, 900), "phone": (390, 844)}
MAX_SHOT_HEIGHT = 4000
SESSION_COOKIE = "cedargate_console"
CSRF_REFUSAL = "This form has expired or did not come from this console"
NOT_ALLOWED = "You do not have permission"
# Principals the sidecar is asked about (trusted identity: stated in the body).
ZOE_AUDITOR = {"id": "zoe", "tenant": "acme", "roles": ["auditor"], "clearance": 0}
VIC_VIEWER = {"id": "vic", "tenant": "acme", "roles": ["viewer"], "clearance": 0}


# ---- small helpers -----------------------------------------------------------


def wait_for(condition, what: str, timeout: float = 10.0, interval: float = 0.1):
    """Calls `condition` until it returns something truthy (returned) or
    `timeout` passes (AssertionError naming `what` and the last value)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = condition()
        except (requests.RequestException, WebDriverException) as e:
            last = e
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def holds_for(condition, what: str, secs: float, interval: float = 0.25) -> None:
    """Asserts `condition` stays truthy for `secs`."""
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        value = condition()
        assert value, f"{what} stopped holding (got {value!r})"
        time.sleep(interval)


def replaced(old):
    """A wait condition: the page that held element `old` is gone. Like
    Selenium's staleness_of, but any error about the old node (chromedriver
    sometimes reports "Node with given id does not belong to the document"
    as an unknown error, not as a stale element) counts as gone."""

    def gone(_driver) -> bool:
        try:
            old.is_enabled()
        except WebDriverException:
            return True
        return False

    return gone


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Inputs(HTMLParser):
    """The `<input>`s of a page, as attribute dicts."""

    def __init__(self):
        super().__init__()
        self.inputs: list[dict] = []

    def handle_starttag(self, tag, attrs):
        if tag == "input":
            self.inputs.append(dict(attrs))


def csrf_of(page: str) -> str:
    """The CSRF token of a console page (every signed-in page has one in
    the sign-out form)."""
    p = _Inputs()
    p.feed(page)
    tokens = {i.get("value") for i in p.inputs if i.get("name") == "csrf"}
    assert len(tokens) == 1, f"expected one CSRF token on the page, found {len(tokens)}"
    return tokens.pop()


def ndjson(text: str) -> list[dict]:
    lines = [line for line in text.split("\n") if line.strip()]
    records = []
    for n, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except ValueError as e:
            raise AssertionError(f"line {n} is not JSON ({e}): {line[:200]!r}") from None
    return records


# ---- the servers -------------------------------------------------------------


class Servers:
    """The stand-in issuer, cedargate-admin serve and a cedargate sidecar,
    in `work`; `stop()` ends them all."""

    def __init__(self, bin_dir: Path, work: Path):
        self.bin = bin_dir
        self.work = work
        self.procs: dict[str, subprocess.Popen] = {}
        self.idp: OidcStandIn | None = None

    def start(self) -> None:
        w = self.work
        self._run_once(
            "import",
            [self.bin / "cedargate-admin", "import", "--store", f"sqlite:{w}/store.db",
             "--audit-spool", w / "spool", REPO / "demo/data.json"],
        )
        admin_port, side_port = free_port(), free_port()
        self.admin = f"http://127.0.0.1:{admin_port}"
        self.sidecar = f"http://127.0.0.1:{side_port}"
        self.idp = OidcStandIn(CLIENT_ID, f"{self.admin}/console/callback").start()
        (w / "admin.toml").write_text(
            f"""change_poll_interval_ms = 100

[jwt]
jwks_url = "{self.idp.issuer}/jwks.json"
issuer = "{self.idp.issuer}"
audiences = ["{CLIENT_ID}"]
token_use = "id"

[console]
public_url = "{self.admin}/console/"

[console.oidc]
client_id = "{CLIENT_ID}"
"""
        )
        (w / "sidecar.toml").write_text("change_poll_interval_ms = 100\n")
        common = ["--store", f"sqlite:{w}/store.db", "--policies", REPO / "policies",
                  "--schema", REPO / "schemas"]
        self._spawn(
            "admin",
            [self.bin / "cedargate-admin", "serve", "--config", w / "admin.toml", *common,
             "--audit-spool", w / "admin-spool", "--listen", f"127.0.0.1:{admin_port}"],
        )
        self._spawn(
            "sidecar",
            [self.bin / "cedargate", "serve", "--config", w / "sidecar.toml", *common,
             "--identity", "trusted", "--audit-spool", w / "sidecar-spool",
             "--listen", f"127.0.0.1:{side_port}"],
        )
        for name, url in (("admin", self.admin), ("sidecar", self.sidecar)):
            wait_for(lambda n=name, u=url: self._healthy(n, u), f"{name} /healthz", timeout=30)

    def _run_once(self, name: str, argv: list) -> None:
        r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=REPO)
        assert r.returncode == 0, f"{name} failed ({r.returncode}): {r.stderr[-2000:]}"

    def _spawn(self, name: str, argv: list) -> None:
        log = open(self.work / f"{name}.log", "wb")
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info"), "NO_COLOR": "1"}
        self.procs[name] = subprocess.Popen(
            [str(a) for a in argv], stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env
        )

    def _healthy(self, name: str, url: str) -> bool:
        code = self.procs[name].poll()
        assert code is None, f"{name} exited with {code}:\n{self.log_tail(name)}"
        return requests.get(f"{url}/healthz", timeout=1).status_code == 200

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.work / f"{name}.log"
        if not path.exists():
            return ""
        text = re.sub(r"\x1b\[[0-9;]*m", "", path.read_text(errors="replace"))
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.idp is not None:
            self.idp.stop()

    # ---- asking the servers directly ----------------------------------------

    def decide(self, principal: dict, action: str, doc: str) -> str:
        """The sidecar's decision on `principal` doing `action` to `doc`."""
        body = {"principal": principal, "action": action,
                "resource": {"type": "Document", "id": doc}, "context": {}}
        r = requests.post(f"{self.sidecar}/v1/authorize", json=body, timeout=5)
        r.raise_for_status()
        return r.json()["decision"]

    def await_decision(self, principal: dict, action: str, doc: str, expected: str) -> None:
        wait_for(lambda: self.decide(principal, action, doc) == expected,
                 f"the sidecar to decide {expected} on {principal['id']} {action} {doc}")

    def document(self, tenant: str, doc: str, as_user: str = "acme-admin") -> dict:
        """A document's record from the management API, with a token the
        stand-in mints."""
        r = requests.get(
            f"{self.admin}/v1/tenants/{tenant}/documents/{doc}",
            headers={"Authorization": f"Bearer {self.idp.mint(as_user)}"},
            timeout=5,
        )
        assert r.status_code == 200, f"GET document {doc}: {r.status_code} {r.text[:300]}"
        return r.json()


def shares_of(doc: dict) -> set[str]:
    out = set()
    for s in doc.get("sharedWith") or []:
        out.add(f"user:{s['userId']}" if "userId" in s else f"role:{s.get('role')}")
    return out


# ---- a browser ---------------------------------------------------------------


# At phone width a responsive table's cell is a two-column grid: its label
# (td::before, from data-label) on the left, its content on the right. This
# lists content that landed in the label column instead (a cell with more
# than one child flows the extra ones into the next grid row's first cell).
MISPLACED_CELL_CONTENT = """
const out = [];
for (const td of document.querySelectorAll('table.responsive td[data-label]')) {
  const cs = getComputedStyle(td);
  if (cs.display !== 'grid') continue;
  const labelColumn = parseFloat(cs.gridTemplateColumns.split(' ')[0]);
  const valueColumn = td.getBoundingClientRect().left + parseFloat(cs.paddingLeft) + labelColumn;
  for (const n of td.childNodes) {
    let r;
    if (n.nodeType === Node.ELEMENT_NODE) {
      r = n.getBoundingClientRect();
    } else if (n.nodeType === Node.TEXT_NODE && n.textContent.trim()) {
      const range = document.createRange();
      range.selectNodeContents(n);
      r = range.getBoundingClientRect();
    } else {
      continue;
    }
    if (r.width === 0 || r.height === 0) continue;
    if (r.left < valueColumn - 1) {
      const what = (n.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 30);
      out.push(`${td.dataset.label}: <${n.nodeName.toLowerCase()}> "${what}"`);
    }
  }
}
return out;
"""


def new_driver() -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--hide-scrollbars", "--force-device-scale-factor=1", "--lang=en-US"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    return driver


class Browser:
    """One signed-in (or not yet) browser on the console."""

    def __init__(self, run: "Run", name: str):
        self.run = run
        self.name = name
        self.d = new_driver()
        self.viewport(*SIZES["desktop"])

    @property
    def url(self) -> str:
        return self.d.current_url

    def path(self) -> str:
        """The current page's path, percent-decoded (the console encodes
        every non-alphanumeric character of an id: /console/t/browser%2Dco)."""
        return unquote(urlsplit(self.d.current_url).path)

    def get(self, path: str) -> None:
        self.d.get(self.run.servers.admin + path)

    def find(self, css: str):
        return self.d.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str):
        return self.d.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.find(css).text

    def h1(self) -> str:
        return self.text("main h1")

    def notice(self) -> str:
        found = self.all("main > p.notice")
        return found[0].text if found else ""

    def click_and_wait(self, element) -> None:
        """Clicks something that loads a new page, and waits for it."""
        old = self.d.find_element(By.TAG_NAME, "html")
        element.click()
        WebDriverWait(self.d, 15).until(replaced(old))
        WebDriverWait(self.d, 15).until(
            lambda d: d.execute_script("return document.readyState") == "complete"
        )

    def cookie(self, name: str = SESSION_COOKIE) -> dict | None:
        return next((c for c in self.d.get_cookies() if c["name"] == name), None)

    def session(self) -> requests.Session:
        """A requests session carrying this browser's session cookie."""
        s = requests.Session()
        s.cookies.set(SESSION_COOKIE, self.cookie()["value"])
        return s

    def sign_in(self, user: str, shots: bool = False) -> None:
        """Signs in through the stand-in: the console's sign-in link, the
        issuer's user picker, back through the callback."""
        self.get("/console/login")
        assert self.h1() == "Sign in", f"login page h1: {self.h1()!r}"
        if shots:
            self.shoot("login")
        self.click_and_wait(self.find("a#sign-in-oidc"))
        issuer = self.run.servers.idp.issuer
        assert self.url.startswith(f"{issuer}/authorize?"), f"not at the issuer: {self.url}"
        if shots:
            self.shoot("idp-picker", console=False)
        Select(self.find("select#idp-user")).select_by_value(user)
        # The issuer's redirect, the callback's and the console's own are
        # followed before the next page has loaded.
        self.click_and_wait(self.find("button#idp-continue"))
        landed = self.url.startswith(self.run.servers.admin + "/console/") and self.path() != "/console/callback"
        assert landed, f"{user} did not land on the console: {self.url}: {self.page_text()}"

    def page_text(self) -> str:
        """The page's heading and first problem, for failure messages."""
        problems = self.all("p.problem")
        h1 = self.all("h1")
        return " / ".join(
            [h1[0].text if h1 else "(no h1)"] + ([problems[0].text] if problems else [])
        )

    def csrf(self) -> str:
        return csrf_of(self.d.page_source)

    def shoot(self, name: str, console: bool = True) -> None:
        """Screenshots at desktop and phone width, full page height (capped);
        at phone width also records whether the page scrolls sideways."""
        for label, (w, h) in SIZES.items():
            self.viewport(w, h)
            full = self.d.execute_script(
                "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"
            )
            self.viewport(w, min(max(h, full), MAX_SHOT_HEIGHT))
            if label == "phone" and console:
                page = f"{name} ({self.url.removeprefix(self.run.servers.admin)})"
                self.run.overflow[page] = self.d.execute_script(
                    "return [document.documentElement.scrollWidth, window.innerWidth]"
                )
                self.run.misplaced[page] = self.d.execute_script(MISPLACED_CELL_CONTENT)
            self.d.save_screenshot(str(self.run.shots / f"{name}-{label}.png"))
        self.viewport(*SIZES["desktop"])

    def viewport(self, width: int, height: int) -> None:
        """Makes the page's viewport exactly width × height (Chrome's device
        emulation: a window cannot be narrower than 500 px, and its frame
        takes some of its height); below 600 px wide, as a phone (touch,
        the page's viewport meta tag honoured)."""
        self.d.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
        )

    def unlabelled_fields(self) -> list[str]:
        """Form fields with no label (neither wrapping nor `for`) and no
        aria-label / aria-labelledby."""
        return self.d.execute_script(
            """
            return Array.from(document.querySelectorAll(
                'input:not([type=hidden]), select, textarea'))
              .filter(el => !(el.labels && el.labels.length)
                         && !el.getAttribute('aria-label')
                         && !el.getAttribute('aria-labelledby'))
              .map(el => el.outerHTML.slice(0, 160));
            """
        )

    def post_form(self, action: str, fields: dict[str, str]) -> None:
        """Submits a form made on the current page (as a page of the console
        would), and waits for the answer."""
        old = self.d.find_element(By.TAG_NAME, "html")
        self.d.execute_script(
            """
            const f = document.createElement('form');
            f.method = 'post'; f.action = arguments[0];
            for (const [k, v] of Object.entries(arguments[1])) {
              const i = document.createElement('input');
              i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
            }
            document.body.appendChild(f); f.submit();
            """,
            action,
            fields,
        )
        WebDriverWait(self.d, 15).until(replaced(old))

    # ---- the documents page --------------------------------------------------

    def documents(self, tenant: str = "acme", deleted: bool = False) -> None:
        self.get(f"/console/t/{tenant}/documents" + ("?view=deleted" if deleted else ""))
        assert self.h1() == "Documents", f"documents page h1: {self.h1()!r}"

    def listed(self) -> list[str]:
        return [r.get_attribute("data-document") for r in self.all("table#documents tr[data-document]")]

    def row(self, doc: str):
        return self.find(f'table#documents tr[data-document="{doc}"]')

    def change_form(self, doc: str, op: str):
        """One of a document's forms under "Change" (opened first)."""
        row = self.row(doc)
        details = row.find_elements(By.TAG_NAME, "details")
        if details and details[0].get_attribute("open") is None:
            details[0].find_element(By.TAG_NAME, "summary").click()
        return row.find_element(By.CSS_SELECTOR, f'form[action$="/{op}"]')

    def submit(self, form) -> None:
        self.click_and_wait(form.find_element(By.CSS_SELECTOR, "button[type=submit]"))

    def fill_share(self, doc: str, kind: str, grantee: str, permission: str):
        form = self.change_form(doc, "share")
        Select(form.find_element(By.NAME, "kind")).select_by_value(kind)
        field = form.find_element(By.NAME, "grantee")
        field.clear()
        field.send_keys(grantee)
        Select(form.find_element(By.NAME, "permission")).select_by_value(permission)
        return form

    def shares_listed(self, doc: str) -> list[str]:
        return [i.get_attribute("value") for i in
                self.row(doc).find_elements(By.CSS_SELECTOR, 'form[action$="/unshare"] input[name=grantee]')]

    def quit(self) -> None:
        try:
            self.d.quit()
        except WebDriverException:
            pass


# ---- the run -----------------------------------------------------------------


class Run:
    def __init__(self, servers: Servers, shots: Path):
        self.servers = servers
        self.shots = shots
        self.browsers: dict[str, Browser] = {}
        self.overflow: dict[str, list[int]] = {}
        self.misplaced: dict[str, list[str]] = {}
        self.unlabelled: dict[str, list[str]] = {}

    def browser(self, name: str) -> Browser:
        if name not in self.browsers:
            self.browsers[name] = Browser(self, name)
        return self.browsers[name]

    @property
    def admin(self) -> Browser:
        return self.browser("acme-admin")

    def note_labels(self, b: Browser, page: str) -> None:
        self.unlabelled[page] = b.unlabelled_fields()

    def quit(self) -> None:
        for b in self.browsers.values():
            b.quit()


CHECKS: list[tuple[str, object, bool]] = []


def check(name: str, critical: bool = False):
    """Registers a check; they run in the order they are defined. A failed
    critical check stops the run (what follows depends on it)."""

    def register(fn):
        CHECKS.append((name, fn, critical))
        return fn

    return register


# ---- the checks --------------------------------------------------------------


@check("the stand-in issuer refuses a code with the wrong PKCE verifier")
def standin_checks_pkce(run: Run) -> None:
    idp = run.servers.idp
    verifier = "v" * 50
    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": idp.redirect_uri,
              "scope": "openid", "state": "s", "nonce": "n",
              "code_challenge": s256(verifier), "code_challenge_method": "S256"}

    def code() -> str:
        r = requests.post(f"{idp.issuer}/authorize", data={**params, "user": "acme-viewer"},
                          allow_redirects=False, timeout=5)
        assert r.status_code == 302, r.status_code
        return parse_qs(urlsplit(r.headers["Location"]).query)["code"][0]

    def token(c: str, v: str) -> requests.Response:
        return requests.post(f"{idp.issuer}/token", timeout=5, data={
            "grant_type": "authorization_code", "code": c, "redirect_uri": idp.redirect_uri,
            "client_id": CLIENT_ID, "code_verifier": v})

    bad = token(code(), "w" * 50)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant", bad.text
    c = code()
    assert token(c, verifier).status_code == 200
    assert token(c, verifier).status_code == 400, "a code is used once"
    idp.token_requests.clear()


@check("acme-admin signs in through the authorization code flow and lands on the acme overview", critical=True)
def sign_in_acme_admin(run: Run) -> None:
    b = run.admin
    b.sign_in("acme-admin", shots=True)
    assert b.path() == "/console/t/acme", f"landed on {b.url}"
    assert b.h1() == "Acme Corp", f"overview h1: {b.h1()!r}"
    assert "active" in b.text("dd#tenant-status")
    meters = b.all("div#usage meter")
    assert len(meters) == 4, f"{len(meters)} usage meters"
    assert not b.all("form#status-form"), "a tenant admin is offered the status form"
    b.shoot("overview")


@check("the console exchanged the code with a PKCE verifier matching its challenge")
def pkce_used(run: Run) -> None:
    reqs = run.servers.idp.token_requests
    ok = [r for r in reqs if r["user"] == "acme-admin" and r["pkce_ok"] and r["status"] == 200]
    assert ok, f"no token request with a matching verifier: {reqs}"
    assert ok[0]["grant_type"] == "authorization_code" and ok[0]["client_id"] == CLIENT_ID


@check("the session cookie is HttpOnly, SameSite=Lax, Path=/console/")
def session_cookie(run: Run) -> None:
    c = run.admin.cookie()
    assert c, f"no {SESSION_COOKIE} cookie: {run.admin.d.get_cookies()}"
    assert c.get("httpOnly") is True, c
    assert c.get("sameSite") == "Lax", c
    assert c.get("path") == "/console/", c
    assert c.get("secure") is False, "loopback: not Secure"
    assert len(c["value"]) >= 43, "a 256-bit random value"
    assert run.admin.cookie("cedargate_oidc") is None, "the sign-in state cookie is cleared"


@check("sharing alice-notes with role auditor (still private) does not grant Read")
def share_while_private(run: Run) -> None:
    s, b = run.servers, run.admin
    assert s.decide(ZOE_AUDITOR, "Read", "alice-notes") == "Deny", "denied before sharing"
    b.documents()
    form = b.fill_share("alice-notes", "role", "auditor", "read")  # opens "Change"
    run.note_labels(b, "documents")
    b.shoot("documents")
    b.submit(form)
    assert b.notice() == "Shared.", f"notice: {b.notice()!r}"
    assert "role:auditor" in b.shares_listed("alice-notes")
    assert "role:auditor" in shares_of(s.document("acme", "alice-notes"))
    # visibility.shared-read counts shares only when visibility is "shared".
    holds_for(lambda: s.decide(ZOE_AUDITOR, "Read", "alice-notes") == "Deny",
              "Deny while alice-notes is private", secs=1.5)


@check("making alice-notes shared lets role auditor Read it (sidecar Allows)")
def visibility_shared(run: Run) -> None:
    b = run.admin
    form = b.change_form("alice-notes", "visibility")
    Select(form.find_element(By.NAME, "visibility")).select_by_value("shared")
    b.submit(form)
    assert b.notice() == "Visibility changed.", f"notice: {b.notice()!r}"
    assert "shared" in b.row("alice-notes").find_element(By.CSS_SELECTOR, 'td[data-label="Visibility"]').text
    run.servers.await_decision(ZOE_AUDITOR, "Read", "alice-notes", "Allow")


@check("removing the share denies Read again (sidecar Denies)")
def unshare(run: Run) -> None:
    b = run.admin
    forms = [f for f in b.row("alice-notes").find_elements(By.CSS_SELECTOR, 'form[action$="/unshare"]')
             if f.find_element(By.NAME, "grantee").get_attribute("value") == "role:auditor"]
    assert len(forms) == 1, f"{len(forms)} Remove forms for role:auditor"
    button = forms[0].find_element(By.TAG_NAME, "button")
    assert button.text == "Remove" and button.get_attribute("aria-label") == "Stop sharing with role:auditor"
    b.click_and_wait(button)
    assert b.notice() == "No longer shared.", f"notice: {b.notice()!r}"
    assert "role:auditor" not in b.shares_listed("alice-notes")
    run.servers.await_decision(ZOE_AUDITOR, "Read", "alice-notes", "Deny")


@check("deleting handbook moves it to Recently deleted (sidecar Denies Read)")
def soft_delete(run: Run) -> None:
    s, b = run.servers, run.admin
    assert s.decide(VIC_VIEWER, "Read", "handbook") == "Allow", "public handbook readable before"
    b.documents()
    b.submit(b.change_form("handbook", "delete"))
    assert b.notice().startswith("Deleted."), f"notice: {b.notice()!r}"
    assert "handbook" not in b.listed(), b.listed()
    s.await_decision(VIC_VIEWER, "Read", "handbook", "Deny")
    b.click_and_wait(b.find("a#deleted-view"))
    assert b.listed() == ["handbook"], f"recently deleted: {b.listed()}"
    left = b.row("handbook").find_element(By.CSS_SELECTOR, 'td[data-label="Restorable"]').text
    assert re.fullmatch(r"\d+ days left", left), f"restorable: {left!r}"
    b.shoot("recently-deleted")


@check("restoring handbook brings it back (sidecar Allows Read again)")
def restore(run: Run) -> None:
    s, b = run.servers, run.admin
    form = b.row("handbook").find_element(By.CSS_SELECTOR, 'form[action$="/restore"]')
    assert form.find_element(By.TAG_NAME, "button").text == "Restore"
    b.submit(form)
    assert b.notice() == "Restored.", f"notice: {b.notice()!r}"
    assert "handbook" not in b.listed(), "gone from Recently deleted"
    b.documents()
    assert "handbook" in b.listed(), b.listed()
    s.await_decision(VIC_VIEWER, "Read", "handbook", "Allow")


@check("the audit log shows the console's changes and its hash chains are intact")
def audit_log(run: Run) -> None:
    b = run.admin
    b.get("/console/t/acme/audit")
    assert b.h1() == "Audit log", f"audit h1: {b.h1()!r}"
    chain = b.text("#chain-result")
    assert "Hash chains verified" in chain and "intact" in chain, f"chain result: {chain!r}"
    table = b.text("table#audit")
    missing = [a for a in ("ShareDocument", "UnshareDocument", "DeleteDocument", "RestoreDocument")
               if a not in table]
    assert not missing, f"not in the audit table: {missing}"
    run.note_labels(b, "audit")
    row = b.find("table#audit tbody tr")
    row.find_element(By.TAG_NAME, "summary").click()
    assert row.find_element(By.TAG_NAME, "details").get_attribute("open") is not None
    assert "Event" in row.find_element(By.CSS_SELECTOR, "dl.facts").text
    b.shoot("audit-details-open")


@check("the audit filter narrows the table to one action")
def audit_filter(run: Run) -> None:
    b = run.admin
    form = b.find("form#audit-filters")
    field = form.find_element(By.NAME, "action")
    field.clear()
    field.send_keys("DeleteDocument")
    b.submit(form)
    actions = {td.text for td in b.all('table#audit td[data-label="Action"]')}
    assert actions == {"DeleteDocument"}, f"actions after filtering: {actions}"
    assert "intact" in b.text("#chain-result")


@check("the audit downloads (NDJSON, OCSF) are JSON on every line")
def audit_download(run: Run) -> None:
    b = run.admin
    b.get("/console/t/acme/audit")
    http = b.session()
    for link in ("a#download-ndjson", "a#download-ocsf"):
        href = b.find(link).get_attribute("href")
        r = http.get(href, allow_redirects=False, timeout=10)
        assert r.status_code == 200, f"{link}: {r.status_code}"
        assert r.headers["content-type"].startswith("application/x-ndjson"), r.headers["content-type"]
        assert "attachment" in r.headers.get("content-disposition", "")
        records = ndjson(r.text)
        assert records, f"{link}: empty"
        if link == "a#download-ndjson":
            actions = {rec.get("action") for rec in records}
            assert {"ShareDocument", "RestoreDocument"} <= actions, f"actions: {sorted(map(str, actions))}"


@check("the access checker answers as the sidecar does")
def access_checker(run: Run) -> None:
    b = run.admin
    cases = [
        (ZOE_AUDITOR, "Read", "alice-notes"),  # unshared again
        (VIC_VIEWER, "Read", "handbook"),  # public, restored
    ]
    for principal, action, doc in cases:
        b.get("/console/t/acme/access")
        form = b.find("form#access-form")
        for name, value in (("user", principal["id"]), ("roles", ", ".join(principal["roles"])),
                            ("document", doc)):
            field = form.find_element(By.NAME, name)
            field.clear()
            field.send_keys(value)
        Select(form.find_element(By.NAME, "clearance")).select_by_value(str(principal["clearance"]))
        Select(form.find_element(By.NAME, "action")).select_by_value(action)
        b.submit(form)
        shown = b.text("#access-result #access-decision")
        expected = run.servers.decide(principal, action, doc)
        assert shown == expected, f"{principal['id']} {action} {doc}: console {shown}, sidecar {expected}"
    run.note_labels(b, "access")
    b.shoot("access-checker")


@check("the export page exports NDJSON (with the page's CSRF token)")
def export(run: Run) -> None:
    b = run.admin
    b.get("/console/t/acme/export")
    form = b.find("form#export-form")
    b.shoot("export")
    token = form.find_element(By.NAME, "csrf").get_attribute("value")
    r = b.session().post(form.get_attribute("action"), data={"csrf": token}, timeout=30)
    assert r.status_code == 200, f"export: {r.status_code} {r.text[:300]}"
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert "acme" in r.headers.get("content-disposition", "")
    assert ndjson(r.text), "empty export"


@check("another tenant's pages and a missing tenant's pages are the same refusal")
def cross_tenant(run: Run) -> None:
    b = run.admin
    http = b.session()
    for suffix in ("", "/documents", "/audit", "/access", "/export"):
        pages = {}
        for tenant in ("globex", "nosuchtenant"):
            path = f"/console/t/{tenant}{suffix}"
            status = http.get(run.servers.admin + path, allow_redirects=False, timeout=10).status_code
            b.get(path)
            pages[tenant] = (status, b.d.page_source)
        (gs, globex), (ns, missing) = pages["globex"], pages["nosuchtenant"]
        assert gs == ns == 403, f"{suffix or '/'}: HTTP {gs} for globex, {ns} for nosuchtenant"
        assert globex == missing, f"t/…{suffix}: the refusals differ"
        assert "globex" not in globex.lower(), f"t/globex{suffix} names the tenant"
        assert "Not allowed" in globex and NOT_ALLOWED in globex, f"t/globex{suffix}: not the refusal"
    b.get("/console/t/globex/documents")
    b.shoot("refusal")


@check("a form whose CSRF field was removed is refused and changes nothing")
def csrf_in_browser(run: Run) -> None:
    s, b = run.servers, run.admin
    before = shares_of(s.document("acme", "q3-report"))
    b.documents()
    form = b.fill_share("q3-report", "role", "csrf-probe", "read")
    b.d.execute_script("arguments[0].querySelector('input[name=csrf]').remove()", form)
    b.submit(form)
    assert b.h1() == "Refused", f"h1: {b.h1()!r}"
    assert CSRF_REFUSAL in b.text("p.problem"), b.text("main")
    assert shares_of(s.document("acme", "q3-report")) == before, "the shares changed"
    b.documents()
    assert "role:csrf-probe" not in b.shares_listed("q3-report")


@check("raw POSTs without the session's CSRF token (none, another session's, cross-site) get 403")
def csrf_raw(run: Run) -> None:
    s, b = run.servers, run.admin
    action = f"{s.admin}/console/t/acme/documents/q3-report/share"
    fields = {"kind": "role", "grantee": "csrf-probe", "permission": "read"}
    http = b.session()
    b.documents()
    own = b.csrf()
    other = sign_in_with_requests(s, "acme-viewer")
    other_csrf = csrf_of(other.get(f"{s.admin}/console/t/acme", timeout=10).text)
    assert other_csrf != own
    for what, extra, headers in (
        ("no csrf", {}, {}),
        ("another session's csrf", {"csrf": other_csrf}, {}),
        ("an empty csrf", {"csrf": ""}, {}),
        ("a cross-site Origin", {"csrf": own}, {"Origin": "http://evil.example"}),
    ):
        r = http.post(action, data={**fields, **extra}, headers=headers, allow_redirects=False, timeout=10)
        assert r.status_code == 403, f"{what}: HTTP {r.status_code}"
        expected = "sent from another site" if "Origin" in headers else CSRF_REFUSAL
        assert expected in r.text, f"{what}: {r.text[:300]}"
    assert "role:csrf-probe" not in shares_of(s.document("acme", "q3-report"))
    # The same request with the right token goes through (so the 403s above
    # were about the token); undone at once.
    r = http.post(action, data={**fields, "csrf": own}, allow_redirects=False, timeout=10)
    assert r.status_code == 303, f"with the right token: HTTP {r.status_code}"
    assert unquote(r.headers["Location"]) == "/console/t/acme/documents?notice=shared", r.headers["Location"]
    assert "role:csrf-probe" in shares_of(s.document("acme", "q3-report"))
    r = http.post(f"{s.admin}/console/t/acme/documents/q3-report/unshare",
                  data={"grantee": "role:csrf-probe", "csrf": own}, allow_redirects=False, timeout=10)
    assert r.status_code == 303, r.status_code
    assert "role:csrf-probe" not in shares_of(s.document("acme", "q3-report"))


def sign_in_with_requests(s: Servers, user: str) -> requests.Session:
    """Signs in through the stand-in without a browser; returns the session."""
    http = requests.Session()
    r = http.get(f"{s.admin}/console/login/oidc", allow_redirects=False, timeout=10)
    assert r.status_code == 303, f"login/oidc: {r.status_code}"
    params = {k: v[0] for k, v in parse_qs(urlsplit(r.headers["Location"]).query).items()}
    r = http.post(f"{s.idp.issuer}/authorize", data={**params, "user": user}, allow_redirects=False, timeout=10)
    assert r.status_code == 302, f"issuer authorize: {r.status_code}"
    r = http.get(r.headers["Location"], allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"] == "/console/", f"callback: {r.status_code} {r.text[:200]}"
    assert http.cookies.get(SESSION_COOKIE), "no session cookie"
    return http


@check("acme-viewer signs in and may not delete a document (403 Not allowed)")
def viewer_refused(run: Run) -> None:
    s = run.servers
    v = run.browser("acme-viewer")
    v.sign_in("acme-viewer")
    assert v.all("button#sign-out"), f"not signed in: {v.url}"
    v.get("/console/t/acme/documents")
    assert v.h1() == "Not allowed", f"viewer's documents page: {v.h1()!r}"
    v.post_form("/console/t/acme/documents/handbook/delete", {"csrf": v.csrf()})
    assert v.path() == "/console/t/acme/documents/handbook/delete", v.url
    assert v.h1() == "Not allowed", f"h1: {v.h1()!r}"
    assert NOT_ALLOWED in v.text("p.problem")
    status = v.session().post(f"{s.admin}/console/t/acme/documents/handbook/delete",
                              data={"csrf": v.csrf()}, allow_redirects=False, timeout=10).status_code
    assert status == 403, f"HTTP {status}"
    assert s.document("acme", "handbook").get("deletedAt") is None, "handbook was deleted"


@check("platform-admin sees the tenants list and can search it")
def tenants_list(run: Run) -> None:
    p = run.browser("platform-admin")
    p.sign_in("platform-admin")
    assert p.path() == "/console/tenants", f"platform admin landed on {p.url}"
    ids = {a.text for a in p.all('table#tenants td[data-label="Tenant"] a')}
    assert {"acme", "globex", "initech", "platform"} <= ids, ids
    assert p.all("form#create-tenant")
    run.note_labels(p, "tenants")
    p.shoot("tenants")
    search = p.find("input#tenant-search")
    search.send_keys("glob")
    p.click_and_wait(search.find_element(By.XPATH, "ancestor::form//button[@type='submit']"))
    ids = [a.text for a in p.all('table#tenants td[data-label="Tenant"] a')]
    assert ids == ["globex"], f"search 'glob': {ids}"


@check("platform-admin creates a tenant and is offered the status form")
def create_tenant(run: Run) -> None:
    p = run.browser("platform-admin")
    p.get("/console/tenants")
    form = p.find("form#create-tenant")
    for name, value in (("tenantId", "browser-co"), ("name", "Browser Test Co"), ("features", "export")):
        form.find_element(By.NAME, name).send_keys(value)
    Select(form.find_element(By.NAME, "tier")).select_by_value("pro")
    p.submit(form)
    assert p.path() == "/console/t/browser-co", p.url
    assert p.notice() == "Tenant created.", f"notice: {p.notice()!r}"
    assert p.h1() == "Browser Test Co"
    assert "trial" in p.text("dd#tenant-status")
    assert p.find("select#status-select").get_attribute("value") == "trial"


@check("every form field on the documents, audit, access and tenants pages has a label")
def labels(run: Run) -> None:
    expected = {"documents", "audit", "access", "tenants"}
    assert expected <= set(run.unlabelled), f"pages not examined: {expected - set(run.unlabelled)}"
    bad = {page: fields for page, fields in run.unlabelled.items() if fields}
    assert not bad, f"unlabelled fields: {bad}"


@check("no console page scrolls sideways at phone width (390 px)")
def no_sideways_scroll(run: Run) -> None:
    assert run.overflow, "no pages were measured"
    widths = {w for _, w in run.overflow.values()}
    assert widths == {SIZES['phone'][0]}, f"viewport widths at phone size: {widths}"
    bad = {page: f"scrollWidth {sw} > {w}" for page, (sw, w) in run.overflow.items() if sw > w + 1}
    assert not bad, f"pages wider than the phone: {bad}"


@check("at phone width, table cells keep their content beside its label")
def phone_table_cells(run: Run) -> None:
    assert run.misplaced, "no pages were measured"
    bad = {}
    for page, found in run.misplaced.items():
        if found:
            examples = sorted(set(found))
            bad[page] = f"{len(found)} misplaced: {examples[:6]}"
    assert not bad, f"content in the label column: {bad}"


@check("signing out ends the session: the old cookie is sent to the login page")
def sign_out(run: Run) -> None:
    b = run.admin
    b.get("/console/t/acme")
    old = b.cookie()["value"]
    b.click_and_wait(b.find("button#sign-out"))
    assert b.path() == "/console/login", b.url
    assert b.notice() == "You have signed out.", f"notice: {b.notice()!r}"
    assert b.cookie() is None, "the browser still has the session cookie"
    r = requests.get(f"{run.servers.admin}/console/t/acme", cookies={SESSION_COOKIE: old},
                     allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers.get("Location") == "/console/login", (r.status_code, r.headers)


# ---- main ----------------------------------------------------------------------


def run_checks(run: Run) -> int:
    failed = 0
    for n, (name, fn, critical) in enumerate(CHECKS, 1):
        started = time.monotonic()
        try:
            fn(run)
        except Exception as e:  # noqa: BLE001 — every failure is reported
            failed += 1
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            print(f"FAIL {n:2} {name}: {type(e).__name__}: {msg}", flush=True)
            if not isinstance(e, AssertionError) or os.environ.get("VERBOSE"):
                traceback.print_exc()
            for b in run.browsers.values():
                try:
                    b.d.save_screenshot(str(run.shots / f"FAIL-{fn.__name__}-{b.name}.png"))
                    (run.shots / f"FAIL-{fn.__name__}-{b.name}.html").write_text(b.d.page_source)
                except WebDriverException:
                    pass
            if critical:
                print(f"stopping: the checks after {n} need it", flush=True)
                return failed + len(CHECKS) - n
        else:
            print(f"ok   {n:2} {name} ({time.monotonic() - started:.1f} s)", flush=True)
    return failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.environ.get("BIN_DIR", "target/debug"),
                    help="directory of cedargate and cedargate-admin")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    bin_dir = (REPO / args.bin).resolve()
    for exe in ("cedargate", "cedargate-admin"):
        if not (bin_dir / exe).is_file():
            print(f"missing {bin_dir / exe}", file=sys.stderr)
            return 2
    shots = Path(os.environ.get("SCREENSHOT_DIR") or tempfile.mkdtemp(prefix="cedargate-console-shots-"))
    shots.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cedargate-browser-"))
    servers = Servers(bin_dir, work)
    run = Run(servers, shots)
    failed = len(CHECKS)
    try:
        servers.start()
        print(f"servers: admin {servers.admin}, sidecar {servers.sidecar}, issuer {servers.idp.issuer}", flush=True)
        failed = run_checks(run)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
    finally:
        run.quit()
        servers.stop()
        if failed:
            for name in servers.procs:
                print(f"--- {name}.log (last lines)\n{servers.log_tail(name)}")
        if failed or args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"screenshots: {shots}")
    print(f"{len(CHECKS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
