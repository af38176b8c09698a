# SPDX-License-Identifier: MIT
# portal.py: the setup-mode captive portal's pages, in Japanese and English on the same page
# (the installer may read either). It lists the networks the bulb sees with their signal, takes
# the password and the server, and shows the result of the connection test.
# It must never put anything a network or a phone sent into a page unescaped (an SSID is
# chosen by whoever runs the access point), never echo a password back, and never build the
# whole page in one string: page() yields small chunks the server writes one by one.
import quality
from micropython import const

_MAX_NETS = const(12)

# Paths phones and PCs probe to detect a captive portal; they all get a redirect to the page.
PROBES = (
    "/generate_204",  # Android
    "/gen_204",
    "/hotspot-detect.html",  # Apple
    "/library/test/success.html",
    "/connecttest.txt",  # Windows
    "/ncsi.txt",
    "/redirect",
    "/canonical.html",  # Firefox
    "/success.txt",
)

# result shown at the top of the page: key -> (Japanese, English)
MESSAGES = {
    "intro": (
        "この電球をWi-Fiにつなぎます。ネットワークを選び、パスワードを入れてください。",
        "Connect this bulb to Wi-Fi: choose the network and enter its password.",
    ),
    "testing": (
        "接続を確かめています。そのままお待ちください。",
        "Testing the connection. Please wait.",
    ),
    "ok": ("つながりました。設定を保存しました。", "Connected. The settings are saved."),
    "wrong_password": ("パスワードが違います。", "The password is wrong."),
    "no_network": ("そのネットワークが見つかりません。", "That network cannot be found."),
    "no_server": (
        "Wi-Fiにはつながりましたが、サーバーに届きません。サーバーのアドレスを確かめてください。",
        "Wi-Fi works, but the server cannot be reached. Check the server address.",
    ),
    "failed": (
        "つながりませんでした。もう一度お試しください。",
        "Could not connect. Please try again.",
    ),
    "weak": (
        "電波が弱いです。ルーターに近いソケットにすると確実です。",
        "The signal is weak: a socket closer to the router is more reliable.",
    ),
}

_STYLE = (
    "body{font-family:sans-serif;margin:1em;max-width:32em}label{display:block;margin:.4em 0}"
    "input[type=text],input[type=password],input[type=url]{width:100%;font-size:1.1em}"
    ".en{color:#555;font-size:.9em}.msg{padding:.6em;border:2px solid #888;margin:.8em 0}"
    "button{font-size:1.2em;padding:.4em 1.2em;margin-top:.8em}"
)


def esc(s):
    """Text safe inside HTML elements and double- or single-quoted attributes."""
    return (
        s.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )


def ssid_text(raw):
    """An SSID (bytes) for display: UTF-8 when it is, else \\xNN escapes."""
    try:
        return str(raw, "utf-8")
    except UnicodeError:
        return "".join(chr(b) if 32 <= b < 127 else f"\\x{b:02x}" for b in raw)


def signal(rssi):
    """(key, Japanese, English) for a signal level in dBm, from quality.LEVELS (the scale the
    lamp and the server use)."""
    return (quality.level(rssi) or quality.LEVELS[-1])[3:]


def networks(scan):
    """WLAN.scan() tuples -> [(ssid bytes, rssi, secured)], strongest first, one per SSID,
    hidden networks left out, at most _MAX_NETS."""
    best = {}
    for net in scan:
        ssid, rssi, auth = bytes(net[0]), net[3], net[4]
        if ssid and (ssid not in best or rssi > best[ssid][1]):
            best[ssid] = (ssid, rssi, auth != 0)
    nets = sorted(best.values(), key=lambda n: -n[1])
    return nets[:_MAX_NETS]


def _msg(key, extra=""):
    ja, en = MESSAGES[key]
    return '<p class="msg">' + esc(ja) + extra + '<br><span class="en">' + esc(en) + "</span></p>"


def page(nets, state="intro", form=None, rssi=None, bulb=""):
    """Yield the setup page in chunks. state: a MESSAGES key; form: the last submitted fields
    (ssid and server are kept, the password never); rssi: the signal after a success."""
    form = form or {}
    chosen = form.get("ssid", "")
    yield (
        '<!DOCTYPE html><html lang="ja"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
    )
    if state == "testing":
        yield '<meta http-equiv="refresh" content="3">'
    yield "<title>見守り電球の設定 / Mimamori bulb setup</title><style>" + _STYLE + "</style>"
    yield '</head><body><h1>見守り電球の設定<br><span class="en">Mimamori bulb setup</span></h1>'
    if bulb:
        yield "<p>電球 / Bulb: <b>" + esc(bulb) + "</b></p>"
    yield _msg(state if state in MESSAGES else "failed")
    if state == "ok" and rssi is not None:
        key, ja, en = signal(rssi)
        yield f"<p>電波 / Signal: <b>{ja} / {en}</b> ({rssi} dBm)</p>"
        if key in ("weak", "poor"):
            yield _msg("weak")
    if state in ("ok", "testing"):
        yield "</body></html>"
        return
    yield '<form method="post" action="/"><fieldset><legend>ネットワーク / Network</legend>'
    for ssid, level, secured in nets:
        value = ssid.hex()
        key, ja, en = signal(level)
        yield (
            '<label><input type="radio" name="ssid" value="' + value + '"'
            + (" checked" if value == chosen else "") + "> " + esc(ssid_text(ssid))
            + ' <span class="en">' + ("" if secured else "オープン / open, ")
            + f"{ja} / {en} ({level} dBm)</span></label>"
        )  # fmt: skip
    yield (
        '<label><input type="radio" name="ssid" value=""' + ("" if chosen else " checked")
        + '> その他 / Other: <input type="text" name="other" maxlength="32" value="'
        + esc(form.get("other", "")) + '"></label></fieldset>'
    )  # fmt: skip
    yield (
        '<label>パスワード <span class="en">Password</span>'
        '<input type="password" name="password" maxlength="64" autocomplete="off"></label>'
        '<label>サーバー <span class="en">Server</span><input type="url" name="server" value="'
        + esc(form.get("server", ""))
        + '"></label><button type="submit">つなぐ / Connect</button></form></body></html>'
    )


def _hex(c):
    """Value of one hex digit (a byte value), or -1."""
    if 0x30 <= c <= 0x39:
        return c - 0x30
    c |= 0x20  # lower case
    return c - 0x57 if 0x61 <= c <= 0x66 else -1


def unquote(s):
    """application/x-www-form-urlencoded value -> bytes ('+' is a space, %XX a byte)."""
    out = bytearray()
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c == 0x2B:  # +
            out.append(0x20)
        elif c == 0x25 and i + 2 < n and _hex(s[i + 1]) >= 0 and _hex(s[i + 2]) >= 0:  # %XX
            out.append(_hex(s[i + 1]) << 4 | _hex(s[i + 2]))
            i += 2
        else:
            out.append(c)
        i += 1
    return bytes(out)


def parse_form(body):
    """A POSTed form (bytes) -> {name: str}; values that are not UTF-8 are dropped."""
    form = {}
    for pair in bytes(body).split(b"&"):
        if not pair:
            continue
        k, _, v = pair.partition(b"=")
        try:
            form[str(unquote(k), "utf-8")] = str(unquote(v), "utf-8")
        except UnicodeError:
            pass
    return form


def chosen_ssid(form):
    """The SSID (bytes) the form picked: a listed network (hex value) or the typed one."""
    h = form.get("ssid", "")
    if h:
        try:
            return bytes.fromhex(h)
        except ValueError:
            return None
    other = form.get("other", "")
    return other.encode() if other else None


def redirect(ip):
    """The answer to a captive-portal probe or an unknown path: go to the setup page."""
    return (
        f"HTTP/1.1 302 Found\r\nLocation: http://{ip}/\r\nContent-Length: 0\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
    ).encode()


def head(status="200 OK", ctype="text/html; charset=utf-8"):
    """Response head for a page streamed with page() (no length: the connection closes)."""
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nCache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
