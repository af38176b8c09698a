# SPDX-License-Identifier: MIT
"""The dashboard: server-rendered pages for watchers and the coordinator (docs/dashboard.md).

    routes.py       install(app) mounts the pages and form actions on the server
    signin.py       signing in and out, the language toggle, the style sheet
    household.py    a watcher's pages and the form actions in a household
    coordinator.py  the coordinator's overview, bulbs, weekly check, report, invitations
    deps.py         what a handler asks for (FastAPI dependencies): the session, the form with
                    its CSRF token checked, the household, the role
    page.py         one request's Page (render, redirect), the shared Web, Refused and its handler
    auth.py         sign-in links, signed session cookies, CSRF, the sign-in rate limit
    views.py        what the pages show (status, bulb health, the pilot report and its CSV)
    chart.py        the days-by-hours activity chart as SVG
    i18n.py         Japanese and English
    cli.py          `mimamori dashboard invite WATCHER`, `mimamori coordinator link`

Templates are in sim/server/templates/, the style sheet in sim/server/static/.
"""
