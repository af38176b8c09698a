# SPDX-License-Identifier: MIT
"""The dashboard: server-rendered pages for watchers and the coordinator (docs/dashboard.md).

    routes.py  pages and form actions; install(app) mounts them on the server
    auth.py    sign-in links, signed session cookies, CSRF, the sign-in rate limit
    views.py   what the pages show (status, bulb health, the pilot report and its CSV)
    chart.py   the days-by-hours activity chart as SVG
    i18n.py    Japanese and English
    cli.py     `mimamori dashboard invite WATCHER`, `mimamori coordinator link`

Templates are in sim/server/templates/, the style sheet in sim/server/static/.
"""
