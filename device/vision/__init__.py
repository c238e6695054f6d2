"""What the bin sees and thinks: photo decoding, the chamber and its empty reference, model
bundles, the TFLite runtime, the classifier and the store of installed models.

No TensorFlow here, ever: the runtime is ai-edge-litert (or tflite-runtime). Modules here import
the door's ``config``, ``errors`` and ``files``, and :mod:`~smartbin.device.records` (the chamber
stamps its reference with the status clock); nothing from ``hardware``, ``home``, ``commands``
or the daemon.
"""
