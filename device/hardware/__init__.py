"""The bin's hardware: GPIO pins, the lid switch, the sorting servos, fill sensors and cameras.

Each part wraps gpiozero (or picamera2 / OpenCV for cameras) behind a small class the daemon
drives, and gpiozero's mock pins stand in for all of them off a Pi. Modules here import the
door's ``config``, ``errors`` and ``files``, and :mod:`~smartbin.device.vision.images` (a folder
camera decodes photos); nothing from ``home``, ``commands`` or the daemon.
"""
