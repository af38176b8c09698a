# SPDX-License-Identifier: MIT
"""What the watchers read, in Japanese and English: one subject line and a short plain-text body.

`render(kind, lang, ctx)` -> (subject, body). Kinds: invite (the test message sent when a watcher
is added), alert, reminder, escalated, claimed ("Aiko is going to check"), overdue (a claim
with no outcome yet), resolved, cleared ("light switched on at 10:42"), digest (the weekly
"all is well" with one line about the week), signin (a dashboard sign-in link), undeliverable
(to the coordinators: a message to a watcher could not be sent), changed (to the other
watchers: someone changed the household's rules, pauses, tiers or roles).
ctx carries plain values (names, local HH:MM times, hours, links); nothing here reads the
database or the clock.

It must never say more than the data tell: times are the ones the rules give, and a message
about a bulb problem never reads like the person is in danger.
"""

from __future__ import annotations

from typing import Any

GAP_RULES = ("no_activity", "unusual_quiet", "daily_window")

OUTCOMES = {
    "fine": {"ja": "無事でした", "en": "all fine"},
    "needed_help": {"ja": "助けが必要でした", "en": "needed help"},
    "false_alarm": {"ja": "誤報でした", "en": "false alarm"},
}


def what(rule: str, lang: str, ctx: dict[str, Any]) -> str:
    """One line: what is wrong (the alert's reason)."""
    gap = ctx.get("gap_h")
    last = ctx.get("last_on") or "?"
    if rule in GAP_RULES:
        radio = ctx.get("radio_h")
        if lang == "ja":
            g = f"{gap:.0f}時間" if gap is not None else "長い間"
            return (f"{g}、電気がつけられていません（最後に点灯：{last}）"
                    + (f"。電球の報告が以前{radio:.0f}時間遅れたことがあり、電波のせいかもしれません"
                       if radio else ""))
        g = f"{gap:.0f} h" if gap is not None else "a long time"
        return (f"no light switched on for {g} (last switched on {last})"
                + (f"; the bulb's reports have come up to {radio:.0f} h late before: this "
                   "silence may be its radio" if radio else ""))
    if rule == "on_too_long":
        on = ctx.get("on_h")
        if lang == "ja":
            return f"電気が{on:.1f}時間つけっぱなしです（{last}から）" if on else "電気がつけっぱなしです"
        return f"the light has been on for {on:.1f} h (since {last})" if on else "the light stays on"
    if rule == "bulb_silent":
        return (f"電球 {ctx.get('subject')} から連絡がありません（機器の確認をお願いします）"
                if lang == "ja" else
                f"bulb {ctx.get('subject')} is not heard from (a device problem to check)")
    if rule == "placement":
        return (f"電球 {ctx.get('subject')} の部屋は毎日よく使われる部屋ではなく、見守りの手がかりが"
                "足りません（設置場所の確認をお願いします）" if lang == "ja" else
                f"bulb {ctx.get('subject')}'s room gives too little signal to watch over "
                "(check where it is installed)")
    if rule == "poor_delivery":
        return (f"電球 {ctx.get('subject')} の通信が遅れがちです（電波の確認をお願いします）"
                if lang == "ja" else
                f"bulb {ctx.get('subject')} keeps reporting late (check its signal)")
    return rule


def _links(lang: str, ctx: dict[str, Any]) -> str:
    lines = []
    if ctx.get("claim_url"):
        lines.append(("確認に行きます： " if lang == "ja" else "I will go and check: ")
                     + ctx["claim_url"])
    if ctx.get("resolve_url"):
        lines.append(("結果を記録する： " if lang == "ja" else "Record the outcome: ")
                     + ctx["resolve_url"])
    return "\n".join(lines)


def render(kind: str, lang: str, ctx: dict[str, Any]) -> tuple[str, str]:
    lang = lang if lang in ("ja", "en") else "ja"
    f = _KINDS.get(kind)
    if f is None:
        raise ValueError(f"no message kind {kind!r}")
    subject, body = f(lang, ctx)
    foot = ("—— みまもり電球（このメールは {home} の見守りのために送られています）"
            if lang == "ja" else "-- Mimamori bulb (you receive this as a watcher of {home})")
    return subject, body.rstrip() + "\n\n" + foot.format(home=ctx.get("home", "")) + "\n"


def _invite(lang: str, c: dict[str, Any]) -> tuple[str, str]:
    if lang == "ja":
        return (f"【みまもり電球】{c['home']} の見守りに登録されました（テスト送信）",
                (f"{c['watcher']} さん\n\n{c['home']} の見守り役として登録されました。"
                "これはテストメッセージです。何もする必要はありません。\n"
                "電気がいつものようにつかないときは、このアドレスにお知らせが届きます。"
                "お知らせには「確認に行きます」のリンクがあり、押すと他の見守り役にも伝わります。\n"
                "毎週、「変わりありません」のまとめもお送りします。"))
    return (f"[Mimamori] You now watch over {c['home']} (test message)",
            (f"Dear {c['watcher']},\n\nyou have been added as a watcher of {c['home']}. This is a "
            "test message: nothing to do.\nWhen the light is not used as usual, an alert comes to "
            "this address. It has an 'I will go and check' link; the other watchers see who "
            "claimed it.\nEvery week you also get a short 'all is well' summary."))


def _alert(lang: str, c: dict[str, Any], prefix: str = "") -> tuple[str, str]:
    line = what(c["rule"], lang, c)
    others = c.get("others") or ""
    if lang == "ja":
        return (f"【みまもり電球】{prefix}{c['home']}：{line}",
                f"{c['watcher']} さん\n\n{c['home']}：{line}。\n"
                "様子を見に行ける方は下のリンクから「確認に行きます」を押してください。"
                "他の見守り役にも伝わります。\n"
                + (f"このお知らせは {others}にも届いています。\n" if others else "")
                + "\n" + _links(lang, c))
    return (f"[Mimamori] {prefix}{c['home']}: {line}",
            f"Dear {c['watcher']},\n\n{c['home']}: {line}.\nIf you can look in, press "
            "'I will go and check' below; the other watchers will see it.\n"
            + (f"Also sent to: {others}.\n" if others else "") + "\n" + _links(lang, c)
            + (f"\n\nDetails: {c['evidence']}" if c.get("evidence") else ""))


def _reminder(lang: str, c: dict[str, Any]) -> tuple[str, str]:
    return _alert(lang, c, "再通知・まだ誰も確認に向かっていません：" if lang == "ja"
                  else "Reminder, nobody has claimed it yet: ")


def _escalated(lang: str, c: dict[str, Any]) -> tuple[str, str]:
    return _alert(lang, c, "ご家族から応答がありません：" if lang == "ja"
                  else "The family has not answered: ")


def _claimed(lang: str, c: dict[str, Any]) -> tuple[str, str]:
    if lang == "ja":
        return (f"【みまもり電球】{c['home']}：{c['claimer']} さんが確認に行きます",
                f"{c['watcher']} さん\n\n{c['home']} のお知らせ（{what(c['rule'], lang, c)}）に"
                f"ついて、{c['claimer']} さんが確認に行きます。結果はまたお知らせします。\n\n"
                + _links(lang, {"resolve_url": c.get("resolve_url")}))
    return (f"[Mimamori] {c['home']}: {c['claimer']} is going to check",
            f"Dear {c['watcher']},\n\nabout the alert for {c['home']} ({what(c['rule'], lang, c)}): "
            f"{c['claimer']} is going to check. You will be told the outcome.\n\n"
            + _links(lang, {"resolve_url": c.get("resolve_url")}))


def _overdue(lang: str, c: dict[str, Any]) -> tuple[str, str]:
    if lang == "ja":
        return (f"【みまもり電球】{c['home']}：{c['claimer']} さんからまだ結果の連絡がありません",
                f"{c['watcher']} さん\n\n{c['home']} のお知らせ（{what(c['rule'], lang, c)}）に"
                f"ついて、{c['claimer']} さんが {c['claimed_on']} に「確認に行きます」と"
                "答えましたが、まだ結果が記録されていません。連絡を取ってみてください。\n\n"
                + _links(lang, {"resolve_url": c.get("resolve_url")}))
    return (f"[Mimamori] {c['home']}: no outcome from {c['claimer']} yet",
            f"Dear {c['watcher']},\n\nabout the alert for {c['home']} "
            f"({what(c['rule'], lang, c)}): {c['claimer']} said at {c['claimed_on']} they would "
            "check, but no outcome has been recorded yet. Please get in touch.\n\n"
            + _links(lang, {"resolve_url": c.get("resolve_url")}))


def _resolved(lang: str, c: dict[str, Any]) -> tuple[str, str]:
    out = OUTCOMES.get(c["outcome"], {}).get(lang, c["outcome"])
    note = c.get("note") or ""
    paused = c.get("paused")
    if lang == "ja":
        return (f"【みまもり電球】{c['home']}：{out}（{c['resolver']} さんより）",
                f"{c['watcher']} さん\n\n{c['home']} のお知らせは {c['resolver']} さんが"
                f"確認しました：{out}。" + (f"\nメモ：{note}" if note else "")
                + ("\n次に電気がつくまで、見守りのお知らせはお休みします。" if paused else ""))
    return (f"[Mimamori] {c['home']}: {out} ({c['resolver']} checked)",
            f"Dear {c['watcher']},\n\n{c['resolver']} checked on {c['home']}: {out}."
            + (f"\nNote: {note}" if note else "")
            + ("\nAlerts are paused until the light is next switched on." if paused else ""))


_WHY = {  # why an alert cleared by itself, when it was not a switch-on
    "paused": {"ja": "見守りが一時停止されたため（{evidence}）",
               "en": "the household was paused ({evidence})"},
    "light_off": {"ja": "電気が消えました", "en": "the light went off"},
    "heard": {"ja": "電球から再び連絡がありました", "en": "the bulb is heard from again"},
    "rule": {"ja": "今の設定ではお知らせの条件に当たらなくなりました",
             "en": "no longer an alert under the current settings"},
    "probably_off": {"ja": "電球から連絡がなくなりました。電気は消されたようです（または電波の問題）"
                           "（{evidence}）",
                     "en": "{evidence}"},
    "placement": {"ja": "設置場所の確認は問題なくなりました", "en": "the placement check now fits"},
    "other": {"ja": "状況が戻りました（{evidence}）", "en": "{evidence}"},
}


def _cleared(lang: str, c: dict[str, Any]) -> tuple[str, str]:
    """ctx: cleared_on (HH:MM of the switch-on that cleared it) or why (a _WHY key)."""
    when = c.get("cleared_on")
    ev = c.get("evidence") or ""
    if when:
        line = f"{when}に電気がつきました" if lang == "ja" else f"light switched on at {when}"
    else:
        line = _WHY[c.get("why") or "other"][lang].format(evidence=ev)
    if lang == "ja":
        return (f"【みまもり電球】{c['home']}：{line}（解除）",
                f"{c['watcher']} さん\n\n{c['home']} のお知らせは自動で解除されました：{line}。")
    return (f"[Mimamori] {c['home']}: {line} (cleared)",
            f"Dear {c['watcher']},\n\nthe alert for {c['home']} cleared by itself: {line}."
            + (f"\nDetails: {ev}" if ev and ev != line else ""))


def _digest(lang: str, c: dict[str, Any]) -> tuple[str, str]:
    n, days, active, alerts = c["switch_ons"], c["days"], c["active_days"], c["alerts"]
    first = c.get("usual_first") or "-"
    if lang == "ja":
        line = (f"この{days}日間：点灯 {n} 回、{active}/{days} 日で利用、"
                f"朝の最初の点灯はだいたい {first}、お知らせ {alerts} 件")
        well = "変わりありません" if active == days and not c.get("open") else "ご確認ください"
        return (f"【みまもり電球】{c['home']}：今週のまとめ（{well}）",
                f"{c['watcher']} さん\n\n{line}。")
    line = (f"last {days} days: {n} switch-ons, light used on {active} of {days} days, "
            f"first light usually around {first}, {alerts} alert(s)")
    well = "all is well" if active == days and not c.get("open") else "please have a look"
    return (f"[Mimamori] {c['home']}: weekly summary ({well})",
            f"Dear {c['watcher']},\n\n{line}.")


def _signin(lang: str, c: dict[str, Any]) -> tuple[str, str]:
    """A sign-in link to the dashboard (sim/server/web): asked for on its sign-in page (valid an
    hour), or an invitation the coordinator sends (ctx valid_ja / valid_en say how long)."""
    if lang == "ja":
        valid = c.get("valid_ja") or "1時間"
        return ("【みまもり電球】ログイン用のリンク",
                (f"{c['watcher']} さん\n\nみまもり電球の画面に入るためのリンクです"
                 f"（{valid}、1回だけ有効）：\n{c['signin_url']}\n\n"
                 "お心当たりがなければ、このメールは無視してください。"))
    valid = c.get("valid_en") or "one hour"
    return ("[Mimamori] Your sign-in link",
            (f"Dear {c['watcher']},\n\nhere is your link to the Mimamori dashboard (valid for "
             f"{valid}, works once):\n{c['signin_url']}\n\nIf you did not ask for it, ignore "
             "this message."))


def _undeliverable(lang: str, c: dict[str, Any]) -> tuple[str, str]:
    """To the household's coordinators: a message to a watcher could not be sent (given up, or
    failing again and again); ctx: whom (the watcher), channel, error, failed_kind, attempts,
    given_up."""
    n, up = c.get("attempts", 1), c.get("given_up", True)
    if lang == "ja":
        state = "送信をあきらめました" if up else "再送を続けています"
        return (f"【みまもり電球】{c['home']}：{c['whom']} さんへのお知らせが届けられません",
                (f"{c['watcher']} さん\n\n{c['whom']} さん宛て（{c['channel']}）の"
                 f"「{c['failed_kind']}」のお知らせが{n}回送れませんでした（{state}）。\n"
                 f"原因：{c['error']}\n連絡先の確認をお願いします（mimamori outbox）。"))
    state = "given up" if up else "still retrying"
    return (f"[Mimamori] {c['home']}: a message to {c['whom']} cannot be delivered",
            (f"Dear {c['watcher']},\n\nthe {c['failed_kind']} message to {c['whom']} "
             f"({c['channel']}) failed {n} times ({state}).\nWhy: {c['error']}\nPlease check "
             "their address (mimamori outbox)."))


def _changed(lang: str, c: dict[str, Any]) -> tuple[str, str]:
    """To the other watchers: someone changed the household's rules, pauses, tiers or roles
    (sim/server/changes.py); ctx: by, by_role_<lang>, lines_<lang> (one "- " line each)."""
    role, lines = c.get(f"by_role_{lang}", ""), c.get(f"lines_{lang}", "")
    if lang == "ja":
        return (f"【みまもり電球】{c['home']}：{c['by']} さんが見守りの設定を変えました",
                (f"{c['watcher']} さん\n\n{c['home']} の見守りについて、{c['by']} さん（{role}）"
                 f"が次のように変えました。\n\n{lines}\n\n"
                 "心当たりのない変更は、ご本人かコーディネーターに確かめてください。"
                 "変更の記録は見守りの画面でいつでも見られます。"))
    return (f"[Mimamori] {c['home']}: {c['by']} changed how it is watched",
            (f"Dear {c['watcher']},\n\n{c['by']} ({role}) changed how {c['home']} is watched:"
             f"\n\n{lines}\n\nIf this looks wrong, ask {c['by']} or the coordinator. The "
             "household's page on the dashboard lists every change."))


_KINDS = {"invite": _invite, "alert": _alert, "reminder": _reminder, "escalated": _escalated,
          "claimed": _claimed, "overdue": _overdue, "resolved": _resolved, "cleared": _cleared,
          "digest": _digest, "signin": _signin, "undeliverable": _undeliverable,
          "changed": _changed}
KINDS = tuple(_KINDS)
