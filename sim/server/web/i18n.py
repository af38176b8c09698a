"""The dashboard's words in Japanese (the default) and English, and how dates and times read.

`t(lang)` returns a lookup: t("claim") -> "確認に行きます". A key missing in one language falls
back to the other, then to the key itself, so a page never fails over a missing word.

It must never read the clock: every date is formatted from an instant the caller passes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

LANGS = ("ja", "en")
WEEKDAYS = {"ja": "月火水木金土日", "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")}

STRINGS: dict[str, dict[str, str]] = {
    "ja": {
        "app": "みまもり電球",
        "lang_other": "English",
        "home": "ホーム",
        "sign_out": "ログアウト",
        "signed_in_as": "{name} さん",
        "coordinator": "コーディネーター",
        "my_households": "見守っている家",
        "no_households": "見守っている家はまだありません。コーディネーターに招待を頼んでください。",
        "status": "いまの様子",
        "st_well": "変わりありません",
        "st_alert": "お知らせがあります",
        "st_paused": "お休み中（不在）",
        "st_silent": "電球から連絡がありません",
        "silent_help": "電球の故障や電波の問題かもしれません。コーディネーターが確認します。",
        "last_on": "最後に電気がついた時刻",
        "none_yet": "まだ記録がありません",
        "open_alert": "お知らせ",
        "claim": "確認に行きます",
        "resolve": "結果を記録する",
        "claimed_by": "{name} さんが確認に行きます（{when}）",
        "nobody_claimed": "まだ誰も確認に向かっていません",
        "outcome": "結果",
        "fine": "無事でした",
        "needed_help": "助けが必要でした",
        "false_alarm": "誤報でした",
        "note": "メモ（誤報の場合は理由を）",
        "open_household": "くわしく見る",
        "activity": "この14日間の点灯",
        "activity_help": "横棒が電気のついていた時間です（左が0時、右が24時。いちばん上が今日）。",
        "lg_on": "点灯",
        "lg_uncertain": "この範囲のどこかで点灯（時刻のわからない記録）",
        "lg_paused": "お休み（不在）",
        "lg_alert": "お知らせが出た時刻",
        "day_summary": "日ごとの一覧",
        "day": "日付",
        "switch_ons": "点灯回数",
        "first_on": "最初",
        "last_on_short": "最後",
        "alerts": "お知らせと履歴",
        "no_alerts": "これまでのお知らせはありません。",
        "opened": "発生",
        "state_open": "未対応",
        "state_claimed": "確認中",
        "state_resolved": "対応済み",
        "state_cleared": "自動解除",
        "cleared_because": "状況が戻ったため、自動で解除されました",
        "resolved_by": "{name} さんが記録：{outcome}",
        "history": "履歴",
        "ev_opened": "お知らせが出ました",
        "ev_reminded": "まだ誰も向かっていないので、もう一度知らせました",
        "ev_escalated": "次の順番の見守り役にも知らせました",
        "ev_overdue": "確認の結果がまだ記録されていません",
        "ev_claimed": "{name} さんが確認に行きます",
        "ev_resolved": "{name} さんが結果を記録しました：{outcome}",
        "ev_cleared": "状況が戻ったため、自動で解除されました",
        "by": "{when} までに",
        "pauses": "お休み（不在の予定）",
        "no_pauses": "予定はありません。",
        "pause_from": "開始日",
        "pause_to": "終了日",
        "pause_reason": "理由（入院、旅行など）",
        "add_pause": "お休みを追加",
        "end_pause": "終了する",
        "paused_now": "お休み中",
        "planned": "予定",
        "settings": "設定",
        "rule": "お知らせの方式",
        "rule_learned": "いつもの生活リズムから判断（おすすめ）",
        "rule_fixed": "決まった時間、点灯がなければ",
        "rule_daily_window": "毎日の時間帯に点灯がなければ",
        "no_activity_h": "点灯がないとお知らせするまでの時間（時間）",
        "on_too_long_h": "つけっぱなしとみなす時間（時間）",
        "window_start": "時間帯の始まり（時:分）",
        "reminder_h": "再通知の間隔（時間）",
        "escalate_1": "次の人へ知らせるまで（時間）",
        "escalate_2": "訪問サービスへ知らせるまで（時間）",
        "save": "保存する",
        "brightness": "電球の明るさ",
        "brightness_help": "暗く感じるときは上げてください。次に電球が連絡したときに変わります。",
        "bulb": "電球",
        "who_notified": "お知らせが届く人と順番",
        "order_help": "1番目の人にまず届き、誰も確認に向かわないと2番目、3番目の人に届きます。",
        "order": "順番",
        "tier_1": "1番目（家族）",
        "tier_2": "2番目（近所・民生委員）",
        "tier_3": "3番目（訪問サービス）",
        "channels": "連絡方法",
        "you": "あなた",
        "saved": "保存しました。",
        "error": "うまくいきませんでした",
        "back": "戻る",
        "sign_in": "ログイン",
        "sign_in_help": "登録したメールアドレスを入れてください。ログイン用のリンクをお送りします。パスワードはいりません。",
        "email": "メールアドレス",
        "send_link": "リンクを送る",
        "link_sent": "登録されているアドレスなら、ログイン用のリンクを送りました。メールをご確認ください（1時間有効）。",
        "too_many": "短い時間に何度も試されました。しばらくしてからもう一度お試しください。",
        "confirm_sign_in": "{name} さんとしてログインします",
        "continue": "ログインする",
        "link_unknown": "このリンクは使えません。もう一度ログイン用のリンクを送ってください。",
        "link_used": "このリンクはすでに使われました。もう一度ログイン用のリンクを送ってください。",
        "link_expired": "このリンクは期限切れです。もう一度ログイン用のリンクを送ってください。",
        "forbidden": "このページを見る権限がありません。",
        "bad_csrf": "フォームの有効期限が切れました。ページを開き直してもう一度お試しください。",
        "not_found": "見つかりませんでした。",
        "overview": "全体の様子",
        "households": "世帯",
        "open_alerts": "未解決のお知らせ",
        "none": "なし",
        "bulb_health": "電球の状態",
        "last_heard": "最終受信",
        "signal": "電波",
        "late": "遅れた報告（7日）",
        "lost": "失われた記録",
        "lost_bulb": "電球の記録では {n}",
        "conflicts": "番号の重複 {n} 件",
        "backlog": "未送信",
        "firmware": "ファームウェア",
        "faults": "不具合（14日）",
        "never": "なし",
        "report": "試行の報告",
        "report_period": "期間：{start} 〜 {end}",
        "r_households": "世帯数",
        "r_household_months": "世帯・月",
        "r_alerts": "お知らせ",
        "r_alerts_per_hm": "世帯・月あたりのお知らせ",
        "r_false": "誤報",
        "r_cleared": "自動解除",
        "r_claim": "確認に向かうまで（中央値）",
        "r_resolve": "対応完了まで（中央値）",
        "r_delay": "報告の遅れ（中央値 / 90%）",
        "r_late_share": "1時間以上遅れた点灯の割合",
        "download_csv": "CSVをダウンロード",
        "invite_link": "招待リンクを作る",
        "invite_made": "{name} さんの招待リンク（14日間、1回だけ有効）：",
        "invite_send": "招待リンクを送る",
        "invite_sent": "{name} さんに招待リンクを送りました（14日間、1回だけ有効）",
        "watchers": "見守る人",
        "ago_min": "{n}分前",
        "ago_h": "{n}時間前",
        "ago_d": "{n}日前",
        "min": "{n}分",
        "hours": "{n}時間",
        "dbm_good": "良好",
        "dbm_fair": "普通",
        "dbm_poor": "弱い",
        "late_flag": "遅れがち",
        "unknown": "不明",
    },
    "en": {
        "app": "Mimamori bulb",
        "lang_other": "日本語",
        "home": "Home",
        "sign_out": "Sign out",
        "signed_in_as": "{name}",
        "coordinator": "Coordinator",
        "my_households": "Households you watch",
        "no_households": "You do not watch any household yet. Ask the coordinator for an invitation.",
        "status": "Now",
        "st_well": "All well",
        "st_alert": "Alert",
        "st_paused": "Paused (away)",
        "st_silent": "Bulb silent",
        "silent_help": "Probably a bulb or radio problem; the coordinator is looking into it.",
        "last_on": "Last switched on",
        "none_yet": "nothing recorded yet",
        "open_alert": "Alert",
        "claim": "I will go and check",
        "resolve": "Record the outcome",
        "claimed_by": "{name} is going to check (since {when})",
        "nobody_claimed": "Nobody is going to check yet",
        "outcome": "Outcome",
        "fine": "All fine",
        "needed_help": "Needed help",
        "false_alarm": "False alarm",
        "note": "Note (for a false alarm: why)",
        "open_household": "See details",
        "activity": "Light use over the last 14 days",
        "activity_help": "Bars show when the light was on (midnight on the left, midnight on the right; today at the top).",
        "lg_on": "light on",
        "lg_uncertain": "switched on some time in this range (time not known)",
        "lg_paused": "paused (away)",
        "lg_alert": "alert raised",
        "day_summary": "Day by day",
        "day": "Day",
        "switch_ons": "Switch-ons",
        "first_on": "First",
        "last_on_short": "Last",
        "alerts": "Alerts and history",
        "no_alerts": "No past alerts.",
        "opened": "Raised",
        "state_open": "Open",
        "state_claimed": "Being checked",
        "state_resolved": "Resolved",
        "state_cleared": "Cleared by itself",
        "cleared_because": "Cleared by itself: the situation went back to normal",
        "resolved_by": "{name} recorded: {outcome}",
        "history": "History",
        "ev_opened": "Alert raised",
        "ev_reminded": "Nobody had claimed it: everyone told was reminded",
        "ev_escalated": "The next people in the order were told",
        "ev_overdue": "No outcome recorded yet",
        "ev_claimed": "{name} is going to check",
        "ev_resolved": "{name} recorded the outcome: {outcome}",
        "ev_cleared": "Cleared by itself",
        "by": "by {when}",
        "pauses": "Planned absences",
        "no_pauses": "None planned.",
        "pause_from": "First day",
        "pause_to": "Last day",
        "pause_reason": "Reason (hospital, travel...)",
        "add_pause": "Add absence",
        "end_pause": "End now",
        "paused_now": "Paused now",
        "planned": "Planned",
        "settings": "Settings",
        "rule": "How alerts are decided",
        "rule_learned": "From the household's usual rhythm (recommended)",
        "rule_fixed": "No switch-on for a fixed time",
        "rule_daily_window": "No switch-on within a daily window",
        "no_activity_h": "Alert after this long without a switch-on (hours)",
        "on_too_long_h": "Light left on counts after (hours)",
        "window_start": "Daily window starts at (HH:MM)",
        "reminder_h": "Remind every (hours)",
        "escalate_1": "Tell the next people after (hours)",
        "escalate_2": "Tell the visit service after (hours)",
        "save": "Save",
        "brightness": "Bulb brightness",
        "brightness_help": "Raise it if the room seems darker than before. The bulb changes at its next report.",
        "bulb": "Bulb",
        "who_notified": "Who is told, and in which order",
        "order_help": "The first group is told first; if nobody claims, the second, then the third.",
        "order": "Order",
        "tier_1": "1st (family)",
        "tier_2": "2nd (neighbours, welfare commissioner)",
        "tier_3": "3rd (visit service)",
        "channels": "Channels",
        "you": "you",
        "saved": "Saved.",
        "error": "That did not work",
        "back": "Back",
        "sign_in": "Sign in",
        "sign_in_help": "Enter the e-mail address you were registered with. We send you a sign-in link; there is no password.",
        "email": "E-mail address",
        "send_link": "Send me a link",
        "link_sent": "If the address is registered, a sign-in link is on its way (valid for 1 hour).",
        "too_many": "Too many attempts in a short time. Please wait a while and try again.",
        "confirm_sign_in": "Sign in as {name}",
        "continue": "Sign in",
        "link_unknown": "This link does not work. Ask for a new sign-in link.",
        "link_used": "This link was used already. Ask for a new sign-in link.",
        "link_expired": "This link has expired. Ask for a new sign-in link.",
        "forbidden": "You may not see this page.",
        "bad_csrf": "The form has expired. Open the page again and retry.",
        "not_found": "Not found.",
        "overview": "Overview",
        "households": "Households",
        "open_alerts": "Open alerts",
        "none": "none",
        "bulb_health": "Bulb health",
        "last_heard": "Last heard",
        "signal": "Signal",
        "late": "Late reports (7 days)",
        "lost": "Records lost",
        "lost_bulb": "the bulb counts {n}",
        "conflicts": "{n} reused seqs",
        "backlog": "Unsent",
        "firmware": "Firmware",
        "faults": "Faults (14 days)",
        "never": "never",
        "report": "Pilot report",
        "report_period": "Period: {start} to {end}",
        "r_households": "Households",
        "r_household_months": "Household-months",
        "r_alerts": "Alerts",
        "r_alerts_per_hm": "Alerts per household-month",
        "r_false": "False alerts",
        "r_cleared": "Cleared by themselves",
        "r_claim": "Time to claim (median)",
        "r_resolve": "Time to resolve (median)",
        "r_delay": "Delivery delay (median / 90 %)",
        "r_late_share": "Switch-ons reported over 1 h late",
        "download_csv": "Download CSV",
        "invite_link": "Make invitation link",
        "invite_made": "Invitation link for {name} (14 days, works once):",
        "invite_send": "Send invitation link",
        "invite_sent": "An invitation link is on its way to {name} (14 days, works once)",
        "watchers": "Watchers",
        "ago_min": "{n} min ago",
        "ago_h": "{n} h ago",
        "ago_d": "{n} days ago",
        "min": "{n} min",
        "hours": "{n} h",
        "dbm_good": "good",
        "dbm_fair": "fair",
        "dbm_poor": "weak",
        "late_flag": "often late",
        "unknown": "unknown",
    },
}


def pick(lang: str | None) -> str:
    return lang if lang in LANGS else "ja"


def t(lang: str) -> Callable[..., str]:
    lang = pick(lang)
    other = "en" if lang == "ja" else "ja"

    def look(key: str, **kw: object) -> str:
        text = STRINGS[lang].get(key) or STRINGS[other].get(key) or key
        return text.format(**kw) if kw else text

    return look


def local(ms: float | None, tz: str) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, ZoneInfo(tz))


def day_label(d: datetime, lang: str) -> str:
    wd = WEEKDAYS[pick(lang)][d.weekday()]
    return f"{d.month}/{d.day} {wd}" if pick(lang) == "ja" else f"{wd} {d.day}"


def when(ms: float | None, tz: str, now_ms: float, lang: str) -> str:
    """'10:42' today, '11/27 10:42' (ja) / 'Nov 27 10:42' (en) another day; '-' for None."""
    d = local(ms, tz)
    if d is None:
        return "-"
    n = local(now_ms, tz)
    assert n is not None
    if d.date() == n.date():
        return f"{d:%H:%M}"
    if pick(lang) == "ja":
        return f"{d.month}/{d.day} {d:%H:%M}"
    return f"{d:%b} {d.day} {d:%H:%M}"


def ago(ms: float | None, now_ms: float, lang: str) -> str:
    tr = t(lang)
    if ms is None:
        return tr("never")
    m = max(0, int((now_ms - ms) // 60_000))
    if m < 120:
        return tr("ago_min", n=m)
    if m < 48 * 60:
        return tr("ago_h", n=m // 60)
    return tr("ago_d", n=m // 1440)


def duration(ms: float | None, lang: str) -> str:
    tr = t(lang)
    if ms is None:
        return "-"
    m = ms / 60_000
    return tr("min", n=round(m)) if m < 120 else tr("hours", n=f"{m / 60:.1f}")
