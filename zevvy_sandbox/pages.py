"""HTML pages of the sandbox: the device list and the device login page.

Plain HTML forms with a little inline CSS; no JavaScript.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from aiohttp import web

if TYPE_CHECKING:
    from .server import DeviceCode, ZevvySandbox

TITLE: Final = "zevvy sandbox"
# Requests listed on the overview page, newest first.
RECENT_REQUESTS: Final = 20

STYLE: Final = """
:root { color-scheme: light dark; --accent: #0a7d5a; --muted: #6b7280;
  --line: rgba(127,127,127,.25); --card: rgba(127,127,127,.06); }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif;
  margin: 0; padding: 0 1rem 3rem; }
header { display: flex; align-items: baseline; gap: 1.5rem; flex-wrap: wrap;
  padding: .8rem 0; border-bottom: 1px solid var(--line); margin-bottom: 1.5rem; }
header strong { font-size: 1.2rem; color: var(--accent); }
header a { color: inherit; }
main { max-width: 64rem; margin: 0 auto; }
h1 { font-size: 1.5rem; margin: .5rem 0 1rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 .6rem; }
.card h2 { margin: 0 0 .2rem; }
.card { background: var(--card); border: 1px solid var(--line);
  border-radius: .6rem; padding: 1rem 1.2rem; margin-bottom: 1rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: .85rem; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .code { font-family: ui-monospace, Menlo, Consolas, monospace; }
.code { font-size: 1.6rem; letter-spacing: .15em; }
.muted { color: var(--muted); }
.error { color: #b42318; font-weight: 600; }
.ok { color: var(--accent); font-weight: 600; }
label { display: block; margin: .6rem 0 .2rem; font-weight: 600; }
input[type=text], input[type=email] { font: inherit; padding: .45rem .6rem;
  border: 1px solid var(--line); border-radius: .4rem; width: 100%; max-width: 22rem; }
input.code { text-transform: uppercase; }
button { font: inherit; font-weight: 600; padding: .5rem 1.2rem; border-radius: .4rem;
  border: 1px solid var(--line); cursor: pointer; margin: 1rem .5rem 0 0; }
button.approve { background: var(--accent); color: white; border-color: var(--accent); }
button.deny { background: transparent; color: #b42318; border-color: #b42318; }
"""


def html_response(body: str, status: int = 200) -> web.Response:
    """Answer an HTML page."""
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


def _page(title: str, content: str) -> str:
    heading = TITLE if title == TITLE else f"{title} · {TITLE}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(heading)}</title>
<style>{STYLE}</style>
</head>
<body>
<header><strong>{TITLE}</strong>
<a href="/">Devices</a> <a href="/device">Connect a device</a></header>
<main>
{content}
</main>
</body>
</html>
"""


def message_page(title: str, message: str) -> str:
    """Return a page with a single message."""
    css = "error" if title.startswith(("Code", "Unknown")) else "ok"
    return _page(
        title,
        f'<h1>{escape(title)}</h1><div class="card"><p class="{css}">'
        f"{escape(message)}</p></div>"
        '<p><a href="/device">Enter another code</a> · <a href="/">Devices</a></p>',
    )


def device_form(sandbox: ZevvySandbox, user_code: str = "", error: str = "") -> str:
    """Return the page where a person types the user code."""
    problem = f'<p class="error">{escape(error)}</p>' if error else ""
    return _page(
        "Connect a device",
        f"""<h1>Connect a device</h1>
<div class="card">
{problem}
<form method="post" action="/device">
<label for="user_code">Code shown by your device</label>
<input type="text" id="user_code" name="user_code" class="code" value="{escape(user_code)}"
 placeholder="XXXX-XXXX" autocomplete="off" autofocus required>
<div><button type="submit" class="approve">Continue</button></div>
</form>
</div>
<p class="muted">Signed-in account of this sandbox:
{escape(sandbox.config.username or sandbox.config.email or sandbox.config.sub)}</p>
""",
    )


def confirm_page(sandbox: ZevvySandbox, code: DeviceCode) -> str:
    """Return the page where a person approves or denies a device code."""
    config = sandbox.config
    scopes = "".join(f"<li><code>{escape(s)}</code></li>" for s in code.scope.split())
    return _page(
        "Approve device",
        f"""<h1>Grant access?</h1>
<div class="card">
<p>The application <code>{escape(code.client_id)}</code> asks for access to your
zevvy account. Make sure this code matches the one shown on your device:</p>
<p class="code">{escape(code.user_code)}</p>
<p>It will be able to:</p>
<ul>{scopes or "<li>(no scopes)</li>"}</ul>
<p class="muted">The code expires in {int(code.expires_in())} s.</p>
<form method="post" action="/device">
<input type="hidden" name="user_code" value="{escape(code.user_code)}">
<details><summary>Sign in as another account</summary>
<label for="username">Username</label>
<input type="text" id="username" name="username" value="{escape(config.username or "")}">
<label for="email">E-mail</label>
<input type="email" id="email" name="email" value="{escape(config.email or "")}">
</details>
<button type="submit" name="action" value="approve" class="approve">Approve</button>
<button type="submit" name="action" value="deny" class="deny">Deny</button>
</form>
</div>
""",
    )


def index_page(sandbox: ZevvySandbox) -> str:
    """Return the overview: devices, registers, readings, pending codes."""
    config = sandbox.config
    parts = [
        "<h1>Devices</h1>",
        '<p class="muted">Devices and registers appear here when the first '
        "measurements arrive, like zevvy's device list (API-ID).</p>",
    ]
    devices = sandbox.device_records()
    if not devices:
        parts.append('<div class="card"><p class="muted">No devices yet.</p></div>')
    for device_ref, device in devices.items():
        rows = []
        for register_ref, register in device.registers.items():
            first, last = register.first, register.last
            rows.append(
                "<tr>"
                f"<td>{escape(register_ref)}</td>"
                f'<td class="num">{len(register.readings)}</td>'
                f"<td>{escape(first.read_at) if first else '&ndash;'}</td>"
                f"<td>{escape(last.read_at) if last else '&ndash;'}</td>"
                f'<td class="num">{f"{last.value:,.3f}" if last else "&ndash;"}</td>'
                f"<td>{escape(register.created_at)}</td>"
                "</tr>"
            )
        parts.append(
            f'<div class="card"><h2>{escape(device_ref)}</h2>'
            f'<p class="muted">created {escape(device.created_at)}</p>'
            "<table><tr><th>Register</th><th>Readings</th><th>First reading</th>"
            "<th>Last reading</th><th>Last value</th><th>Created</th></tr>"
            + "".join(rows)
            + "</table></div>"
        )

    parts.append("<h2>Waiting for approval</h2>")
    pending = sandbox.pending_user_codes()
    if pending:
        items = "".join(
            f'<li><a class="code" href="/device?user_code={quote(code)}">'
            f"{escape(code)}</a></li>"
            for code in pending
        )
        parts.append(f'<div class="card"><ul>{items}</ul></div>')
    else:
        parts.append('<div class="card"><p class="muted">No pending codes.</p></div>')

    grants = [grant for grant in sandbox.grants() if not grant.revoked]
    parts.append("<h2>Logins</h2>")
    if grants:
        login_rows = "".join(
            "<tr>"
            f"<td>{escape(g.account.username or g.account.email or g.account.sub)}</td>"
            f"<td><code>{escape(g.scope)}</code></td>"
            f"<td>{escape(g.created_at)}</td>"
            f'<td class="num">{g.refresh_count}</td>'
            f"<td>{escape(g.refreshed_at) if g.refreshed_at else '&ndash;'}</td>"
            "</tr>"
            for g in grants
        )
        parts.append(
            '<div class="card"><table><tr><th>Account</th><th>Scope</th>'
            "<th>Logged in</th><th>Refreshes</th><th>Last refresh</th></tr>"
            f"{login_rows}</table></div>"
        )
    else:
        parts.append('<div class="card"><p class="muted">No active logins.</p></div>')

    recent = sandbox.requests[-RECENT_REQUESTS:][::-1]
    parts.append("<h2>Recent requests</h2>")
    if recent:
        request_rows = "".join(
            "<tr>"
            f"<td>{escape(r.method)}</td>"
            f"<td><code>{escape(r.path)}</code></td>"
            f'<td class="num">{r.status or "dropped"}</td>'
            "</tr>"
            for r in recent
        )
        parts.append(
            '<div class="card"><table><tr><th>Method</th><th>Path</th>'
            f"<th>Status</th></tr>{request_rows}</table></div>"
        )
    else:
        parts.append('<div class="card"><p class="muted">No requests yet.</p></div>')

    parts.append(
        f"""<h2>Settings</h2>
<div class="card"><table>
<tr><th>Issuer</th><td><code>{escape(sandbox.issuer)}</code></td></tr>
<tr><th>API</th><td><code>{escape(sandbox.api_url)}</code></td></tr>
<tr><th>Client ID</th><td><code>{escape(config.client_id)}</code></td></tr>
<tr><th>Polling interval</th><td>{config.interval:g} s</td></tr>
<tr><th>Code lifetime</th><td>{config.code_lifetime:g} s</td></tr>
<tr><th>Access token lifetime</th><td>{config.access_token_lifetime:g} s</td></tr>
<tr><th>Access tokens</th><td>{"opaque" if config.opaque_access_tokens else "JWT"}, \
ID tokens {"on" if config.id_tokens else "off"}, \
userinfo {"on" if config.userinfo else "off"}</td></tr>
<tr><th>Batch limit</th><td>{_limit(config.max_batch)} \
(above: {config.max_batch_status})</td></tr>
<tr><th>409</th><td>{escape(config.conflict_mode)}, \
{"with" if config.conflict_details else "without"} conflicting times</td></tr>
<tr><th>Invalid readings</th><td>{config.validation_status}, \
values up to {_limit(config.max_value)}</td></tr>
<tr><th>Latency</th><td>{config.latency:g} s</td></tr>
</table></div>"""
    )
    return _page(TITLE, "\n".join(parts))


def _limit(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"
