"""The web dashboard: an opt-in page the daemon serves (``[daemon] web = "127.0.0.1:8484"``).

It shows what ``syncd status``, ``log`` and ``conflicts`` show, for every pair on one page,
and its buttons send the control socket's requests (``now``, ``pause``, ``resume``) through
the daemon's own handler: no second source of truth. Only :mod:`syncd.daemon` imports it.

* :mod:`.history`: pure: runs -> points per run and totals per day;
* :mod:`.plots`: pure: those as small inline SVG bar charts;
* :mod:`.access`: the token, sessions and CSRF tokens;
* :mod:`.dashboard`: gathers one page's state from the daemon and the pairs' indexes;
* :mod:`.server`: the HTTP server (stdlib ``ThreadingHTTPServer``) and its routes.
"""
