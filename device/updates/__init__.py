"""The updates wing: the bin fetches signed model bundles from its owner's repository itself.

``settings.py`` holds ``[updates]``; ``source.py`` says what an update source gives the bin (an
:class:`~.source.Offer` and, once asked, a verified bundle directory). The TUF source verifies
signatures, expiry and rollback before anything is installed; the bin then installs through the
same model store as ``smartbin deploy``, between items, with a health check and a rollback.

Floor 4 (docs/architecture.md): it may import vision (the model store), records and the ground floor;
the daemon drives it.
"""
