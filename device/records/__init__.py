"""What the bin remembers: the event log and its saved photos, the recorder that keeps the log
going through locks, corruption and full disks, the status file, and the one-bin lock.

The lowest wing: modules here import only the door's ``config``, ``errors`` and ``files``.
"""
