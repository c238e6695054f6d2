"""Everything that listens to the bin: the observer interface, MQTT with Home Assistant
discovery, feedback at the lid (LED and buzzer), the review page, and systemd's notify socket;
and the desk where the page asks the daemon for the camera (``camera_requests``).

Observers hear about each item after it is recorded and never slow or stop sorting. Modules here
may import ``hardware``, ``vision``, ``records`` and the door's ``decision`` and ``config``;
never the daemon or ``commands``.
"""
