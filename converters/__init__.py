"""smartbin converters: Keras -> TFLite bundles, parity checks, evaluation, serving export."""

# The TFLite quantisation modes `smartbin convert --quantize` offers (see converters/tflite.py).
QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
# What the thresholds are chosen for on the validation photos, by default (`smartbin convert`, see
# converters/outcomes.py): at most this share of the recyclables into a wrong recycling compartment,
# and at least this share of everything else kept out of the recycling.
DEFAULT_MAX_WRONG = 0.01
DEFAULT_MIN_KEPT_OUT = 0.98
# `smartbin convert --purity`: each label's threshold for this purity instead.
DEFAULT_PURITY = 0.98
