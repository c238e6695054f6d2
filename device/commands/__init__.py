"""The ``smartbin`` sub-commands of the bin (``run``, ``simulate``, ``classify``, ``status``,
``events``, ``config``, ``calibrate``, ``web token``, ``mqtt forget``) and the simulation.

:mod:`smartbin.device.cli` imports each registering module; a module registers argparse parsers
only and imports what its handlers need inside them, so ``smartbin`` starts fast on a Pi. The top
of the house: modules here may import anything in ``device``; nothing in ``device`` imports them.
"""
