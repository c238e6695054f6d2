"""smartbin converters: Keras -> TFLite bundles, parity checks, evaluation, serving export."""

# The TFLite quantisation modes `smartbin convert --quantize` offers (see converters/tflite.py).
QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
