"""smartbin converters: Keras -> TFLite bundles, parity checks, evaluation, serving export."""

# The TFLite quantisation modes `smartbin convert --quantize` offers (see converters/tflite.py).
QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
# What share of the validation photos a label's threshold must leave in its compartment, by default
# (`smartbin convert --purity`, see converters/outcomes.py).
DEFAULT_PURITY = 0.98
