"""The review page on the bin: a small web page, a JSON API and Prometheus metrics.

:class:`~.observer.WebObserver` is the daemon's observer that serves them (Bottle on waitress,
on threads of its own); :mod:`.app` has the routes, :mod:`.queries` the event log reads and the
review writes, :mod:`.tally` the counts and latency histograms kept from the daemon's hooks,
:mod:`.metrics` the Prometheus text, :mod:`.token` the write token, :mod:`.signin` the one-time
sign-in links and their cookie, and ``static/`` the page.
"""
