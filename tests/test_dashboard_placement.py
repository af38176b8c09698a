# SPDX-License-Identifier: MIT
"""The dashboard shows the placement check on each bulb, and the coordinator's page sets every
setting, the weekly absences and a watcher's quiet hours (the sample pilot, in-process)."""

from __future__ import annotations

from mimamori import households as hh
from tests.test_dashboard import Site, csrf, site, template_db  # noqa: F401 (fixtures)


def test_household_page_shows_each_bulbs_placement_check_and_the_coordinator_sees_it_too(
        site: Site) -> None:  # noqa: F811 - the fixture
    aiko = site.sign_in("Aiko")
    page = aiko.get("/h/sato").text
    assert 'class="placement v-' in page and 'data-bulb="sato-toilet"' in page
    assert "used on" in page  # in words: days used, switch-ons a day, longest gap
    coord = site.sign_in(None).get("/coordinator/bulbs").text
    assert '<td class="placement">' in coord


def test_the_coordinator_sets_the_patient_setting_absences_and_quiet_hours_from_the_page(
        site: Site) -> None:  # noqa: F811 - the fixture
    coord = site.sign_in(None)
    token = csrf(coord, "/h/sato")
    r = coord.post("/h/sato/settings", data={"csrf": token, "learned_max_h": "36",
                                             "reminder_max": "2", "days_per_false_alert": "300"},
                   follow_redirects=False)
    assert r.status_code == 303
    with site.db.tx() as c:
        s = hh.household(c, "sato").settings
    assert (s.learned_max_h, s.reminder_max, s.days_per_false_alert) == (36.0, 2, 300.0)
    for bad in ({"learned_max_h": "forever"}, {"reminder_max": "1.5"},
                {"learn_min_days": "100"}):
        assert coord.post("/h/sato/settings", data={"csrf": token, **bad}).status_code == 400
    r = coord.post("/h/sato/absences", data={"csrf": token, "day_tue": "1", "day_fri": "1",
                                             "from": "09:00", "to": "17:00",
                                             "reason": "day service"}, follow_redirects=False)
    assert r.status_code == 303
    page = coord.get("/h/sato").text
    assert "Tue, Fri 09:00–17:00 (day service)" in page
    assert coord.post("/h/sato/absences", data={"csrf": token, "from": "09:00",
                                                "to": "17:00"}).status_code == 400
    nao = site.w[("sato", "Nao")]
    r = coord.post(f"/h/sato/watchers/{nao}/quiet", data={"csrf": token,
                                                          "quiet_hours": "21:00-08:00"},
                   follow_redirects=False)
    assert r.status_code == 303
    with site.db.tx() as c:
        assert hh.watcher(c, nao).quiet_hours == "21:00-08:00"
    # a watcher sets only their own quiet hours
    aiko = site.sign_in("Aiko")
    t2 = csrf(aiko, "/h/sato")
    assert aiko.post(f"/h/sato/watchers/{nao}/quiet",
                     data={"csrf": t2, "quiet_hours": "none"}).status_code == 403
    r = coord.post("/h/sato/absences/1/remove", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303
    with site.db.tx() as c:
        assert hh.household(c, "sato").settings.absences == ()


def test_resolving_needed_help_on_the_page_pauses_until_the_next_switch_on_unless_unticked(
        site: Site) -> None:  # noqa: F811 - the fixture
    aiko = site.sign_in("Aiko")
    token = csrf(aiko, "/h/sato")
    page = aiko.get("/h/sato").text
    assert 'name="pause" value="yes" checked' in page
    # the form sends pause=no then pause=yes when the box is ticked (the last one counts)
    r = aiko.post(f"/h/sato/alerts/{site.alert}/resolve",
                  content=f"csrf={token}&outcome=needed_help&note=ambulance&pause=no&pause=yes",
                  headers={"Content-Type": "application/x-www-form-urlencoded"},
                  follow_redirects=False)
    assert r.status_code == 303
    with site.db.tx() as c:
        (p,) = [x for x in hh.pauses(c, "sato") if x.until_switch_on]
    assert p.reason == "needed help: ambulance"
    assert "until the light is next switched on (needed help: ambulance)" in aiko.get("/h/sato").text
