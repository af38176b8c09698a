# SPDX-License-Identifier: MIT
"""What the watchers read, in Japanese and English: one subject line and a short plain-text body.

`render(kind, lang, ctx)` -> (subject, body). Kinds: invite (the test message sent when a watcher
is added, with an "I received this" link), alert, reminder, escalated, claimed ("Aiko is going
to check"), released (the claimer cannot go after all: open again), overdue (a claim with no
outcome yet), resolved, cleared ("light switched on at 10:42"), digest (the weekly "all is well"
with one line about the week), signin (a dashboard sign-in link), undeliverable (to the
coordinators: a message to a watcher could not be sent), changed (to the other watchers:
someone changed the household's rules, pauses, tiers or roles).
ctx carries plain values (names, local HH:MM times, hours, links); nothing here reads the
database or the clock. Words that pages show too (outcomes) come from the one table,
sim/server/web/i18n.py; a Japanese message never carries an English line (the rules' evidence
is English: Japanese messages say the same from its numbers, `details`).

It must never say more than the data tell: times are the ones the rules give, and a message
about a bulb problem never reads like the person is in danger.
"""

from __future__ import annotations

from typing import Any

from mimamori.web import i18n

GAP_RULES = ("no_activity", "unusual_quiet", "daily_window")


def outcome(key: str, lang: str) -> str:
    """An outcome's words from the one table (i18n), lower case inside an English sentence."""
    word = i18n.t(lang)(key)
    return word[:1].lower() + word[1:] if lang == "en" else word


def _n(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def details(rule: str, lang: str, ctx: dict[str, Any]) -> str:
    """The Details line of an alert: the rules' English evidence, or in Japanese the same from
    its numbers (ctx from alerts.context)."""
    if lang != "ja":
        return str(ctx.get("evidence") or "")
    parts = []
    if rule in GAP_RULES:
        if ctx.get("last_on"):
            parts.append(f"最後に点灯：{ctx['last_on']}")
        if ctx.get("gap_h") is not None:
            parts.append(f"点灯のない時間：{ctx['gap_h']:.0f}時間")
        if ctx.get("limit_h"):
            parts.append(f"お知らせの目安：{ctx['limit_h']:.0f}時間")
        if ctx.get("unreported_until"):
            parts.append(f"{ctx['unreported_until']}までの点灯はまだ報告されていないかもしれません")
        if ctx.get("radio_h"):
            parts.append(f"電球の報告は以前{ctx['radio_h']:.0f}時間遅れたことがあります")
    elif rule == "on_too_long":
        if ctx.get("on_h"):
            parts.append(f"点灯している時間：{ctx['on_h']:.1f}時間")
        if ctx.get("usual_h"):
            parts.append(f"いつもは{ctx['usual_h']:.1f}時間ほど")
        if ctx.get("limit_h"):
            parts.append(f"お知らせの目安：{ctx['limit_h']:.1f}時間")
    elif rule == "poor_delivery" and ctx.get("visits"):
        parts.append(f"最近の点灯{ctx['visits']}回のうち{ctx.get('late', 0)}回の報告が遅れました")
    elif rule == "placement" and ctx.get("days"):
        parts.append(f"{ctx['days']:.0f}日のうち点灯のあった日：{ctx.get('used_days', 0):.0f}日")
    if ctx.get("strength") == "weak":
        parts.append("まだ確かではありません（生活リズムを学習中、または電波の影響）")
    return "、".join(parts)


def placement_words(p: Any, lang: str) -> str:
    """A bulb's placement check (models.Placement) in the reader's language: its own English
    words, or in Japanese the same from its numbers."""
    if lang != "ja":
        return str(p.words)
    return _placement_ja(p) + _radio_ja(p)


def _hours_ja(h: float) -> str:
    return f"{h / 24:.1f}日" if h >= 36 else f"{h:.0f}時間"


def _radio_ja(p: Any) -> str:
    if not p.radio_words():
        return ""
    return (f"報告が最大{_hours_ja(p.held_h)}遅れて届いた日が{p.days}日のうち{p.held_days}日ありました。"
            "その長さの静けさは本人ではなく電波のせいかもしれず、お知らせにもそう書きますが、"
            "1日を超えればご家族にお知らせします。ルーターと電球の場所の電波を確認する"
            "（ルーターは昼も夜も電源を入れたままに）か、携帯電話の回線で報告する電球に替えてください。")


def _placement_ja(p: Any) -> str:
    if p.verdict == "learning":
        return f"電球 {p.device}：部屋の使われ方を確認中です（{p.days}日目）。"
    gap = _hours_ja(p.longest_gap_h)
    head = (f"電球 {p.device}：{p.days}日のうち{p.used_days}日で点灯、1日におよそ"
            f"{p.per_day:.0f}回、点灯のない最長の時間 {gap}")
    if p.verdict == "poor":
        return (head + "。毎日は使われない部屋なので、静かな日があっても異変とはわかりません。"
                "電球をトイレなど毎日使う部屋に移すか、そこにもう1つ付けてください"
                f"（決まった24時間の方式では100日におよそ{p.fixed_alerts_per_100_days:.0f}回"
                "お知らせが出る見込みです）。")
    if p.verdict == "limited":
        return (head + "。いつもの点灯がないと分かってからのお知らせになるため、"
                "1日ほど遅れることがあります。早く知るにはトイレに電球を付けてください。")
    return head + "：問題ありません。"


def event_detail(kind: str, params: dict[str, Any] | None, text: str, lang: str,
                 ctx: dict[str, Any]) -> str:
    """The line under an alert history entry, in the reader's language: from the event's
    params (ctx: alerts.context at the event); a row without params (older than them) keeps
    its English text."""
    if params is None:
        return text if kind in ("opened", "cleared", "firmed") else ""
    if kind in ("opened", "firmed"):
        return details(ctx.get("rule", ""), lang, {**ctx, "evidence": params.get("evidence")})
    if kind == "cleared":
        line = _cleared_line(lang, {**ctx, "evidence": params.get("evidence"),
                                    "why": params.get("why")})
        ev = params.get("evidence") or ""
        return line if lang == "ja" or ev == line else f"{line} ({ev})"
    return ""


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
    tr = i18n.t(lang)
    sep = "：" if lang == "ja" else ": "
    lines = [f"{tr(key)}{sep}{ctx[url]}" for key, url in
             (("claim", "claim_url"), ("resolve", "resolve_url"),
              ("a_dashboard", "dashboard_url")) if ctx.get(url)]
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
                "毎週、「変わりありません」のまとめもお送りします。"
                + (f"\n\nこのメールを受け取ったら、下のリンクから「メールを受け取りました」を"
                   f"押してください（コーディネーターに伝わります）：\n{c['received_url']}"
                   if c.get("received_url") else "")))
    return (f"[Mimamori] You now watch over {c['home']} (test message)",
            (f"Dear {c['watcher']},\n\nyou have been added as a watcher of {c['home']}. This is a "
            "test message: nothing to do.\nWhen the light is not used as usual, an alert comes to "
            "this address. It has an 'I will go and check' link; the other watchers see who "
            "claimed it.\nEvery week you also get a short 'all is well' summary."
            + (f"\n\nPlease confirm that this message reached you (the coordinator sees "
               f"it): open the link and press 'I received this':\n{c['received_url']}"
               if c.get("received_url") else "")))


def _alert(lang: str, c: dict[str, Any], prefix: str = "") -> tuple[str, str]:
    line = what(c["rule"], lang, c)
    others = c.get("others") or ""
    more = details(c["rule"], lang, c)
    if lang == "ja":
        return (f"【みまもり電球】{prefix}{c['home']}：{line}",
                f"{c['watcher']} さん\n\n{c['home']}：{line}。\n"
                "様子を見に行ける方は下のリンクから「確認に行きます」を押してください。"
                "他の見守り役にも伝わります。\n"
                + (f"このお知らせは {others}にも届いています。\n" if others else "")
                + "\n" + _links(lang, c) + (f"\n\n詳細：{more}" if more else ""))
    return (f"[Mimamori] {prefix}{c['home']}: {line}",
            f"Dear {c['watcher']},\n\n{c['home']}: {line}.\nIf you can look in, press "
            "'I will go and check' below; the other watchers will see it.\n"
            + (f"Also sent to: {others}.\n" if others else "") + "\n" + _links(lang, c)
            + (f"\n\nDetails: {more}" if more else ""))


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


def _released(lang: str, c: dict[str, Any]) -> tuple[str, str]:
    if lang == "ja":
        return (f"【みまもり電球】{c['home']}：{c['releaser']} さんが行けなくなりました",
                f"{c['watcher']} さん\n\n{c['home']} のお知らせ（{what(c['rule'], lang, c)}）に"
                f"ついて、{c['releaser']} さんが確認に行けなくなりました。"
                "いま、誰も確認に向かっていません。行ける方は「確認に行きます」を押してください。\n\n"
                + _links(lang, c))
    return (f"[Mimamori] {c['home']}: {c['releaser']} cannot go after all",
            f"Dear {c['watcher']},\n\nabout the alert for {c['home']} "
            f"({what(c['rule'], lang, c)}): {c['releaser']} cannot go after all, so nobody is "
            "going to check now. If you can, press 'I will go and check'.\n\n"
            + _links(lang, c))


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
    out = outcome(c["outcome"], lang)
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


def _cleared_line(lang: str, c: dict[str, Any]) -> str:
    when = c.get("cleared_on")
    if when:
        return f"{when}に電気がつきました" if lang == "ja" else f"light switched on at {when}"
    ev = c.get("evidence") or ""
    if lang == "ja":  # the evidence is English: Japanese says it without
        return _WHY[c.get("why") or "other"]["ja"].replace("（{evidence}）", "")
    return _WHY[c.get("why") or "other"]["en"].format(evidence=ev)


def _cleared(lang: str, c: dict[str, Any]) -> tuple[str, str]:
    """ctx: cleared_on (HH:MM of the switch-on that cleared it) or why (a _WHY key)."""
    line = _cleared_line(lang, c)
    ev = c.get("evidence") or ""
    was = what(c["rule"], lang, c) if c.get("rule") else ""
    if lang == "ja":
        return (f"【みまもり電球】{c['home']}：{line}（解除）",
                f"{c['watcher']} さん\n\n{c['home']} のお知らせは自動で解除されました：{line}。"
                + (f"\n\n詳細：解除されたお知らせ「{was}」" if was else ""))
    return (f"[Mimamori] {c['home']}: {line} (cleared)",
            f"Dear {c['watcher']},\n\nthe alert for {c['home']} cleared by itself: {line}."
            + (f"\nDetails: {ev}" if ev and ev != line else ""))


def _digest(lang: str, c: dict[str, Any]) -> tuple[str, str]:
    """ctx (sweeper.week_summary): switch_ons, days, active_days, paused_days (days away on
    the family's own pause, not a reason to look), usual_first (None: no switch-on heard),
    alerts, open, heard (any bulb ever heard from)."""
    n, days, active, alerts = c["switch_ons"], c["days"], c["active_days"], c["alerts"]
    paused = c.get("paused_days") or 0
    first = c.get("usual_first")
    well = active + paused >= days and not c.get("open")
    if lang == "ja":
        line = (f"この{days}日間：点灯 {n} 回、{active}/{days} 日で利用"
                + (f"、お休み（不在）{paused} 日" if paused else "")
                + (f"、朝の最初の点灯はだいたい {first}" if first else "")
                + f"、お知らせ {alerts} 件")
        if c.get("heard") is False:
            line += "。電球からまだ一度も連絡がありません（コーディネーターが確認します）"
        word = "変わりありません" if well else "ご確認ください"
        return (f"【みまもり電球】{c['home']}：今週のまとめ（{word}）",
                f"{c['watcher']} さん\n\n{line}。")
    line = (f"last {days} days: {_n(n, 'switch-on', 'switch-ons')}, light used on {active} of "
            f"{days} days"
            + (f", away (paused) on {_n(paused, 'day', 'days')}" if paused else "")
            + (f", first light usually around {first}" if first else "")
            + f", {_n(alerts, 'alert', 'alerts')}")
    if c.get("heard") is False:
        line += ". The bulb has not been heard from yet (the coordinator is looking into it)"
    word = "all is well" if well else "please have a look"
    return (f"[Mimamori] {c['home']}: weekly summary ({word})",
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


_KIND_JA = {"invite": "登録のテスト", "alert": "お知らせ", "reminder": "再通知",
            "escalated": "次の順番へのお知らせ", "claimed": "確認に行きます",
            "released": "確認のお返し", "overdue": "結果の催促", "resolved": "結果",
            "cleared": "自動解除", "digest": "週のまとめ", "signin": "ログイン用リンク"}


def _undeliverable(lang: str, c: dict[str, Any]) -> tuple[str, str]:
    """To the household's coordinators: a message to a watcher could not be sent (given up, or
    failing again and again); ctx: whom (the watcher), channel, error, failed_kind, attempts,
    given_up."""
    n, up = c.get("attempts", 1), c.get("given_up", True)
    if lang == "ja":
        state = "送信をあきらめました" if up else "再送を続けています"
        return (f"【みまもり電球】{c['home']}：{c['whom']} さんへのお知らせが届けられません",
                (f"{c['watcher']} さん\n\n{c['whom']} さん宛て（{i18n.t(lang)('ch_' + c['channel'])}）の"
                 f"「{_KIND_JA.get(c['failed_kind'], c['failed_kind'])}」のお知らせが{n}回送れませんでした（{state}）。\n"
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
          "claimed": _claimed, "released": _released, "overdue": _overdue,
          "resolved": _resolved, "cleared": _cleared, "digest": _digest, "signin": _signin,
          "undeliverable": _undeliverable, "changed": _changed}
KINDS = tuple(_KINDS)
