"""edgekd: distil PyTorch teachers into small quantized students that fit a named edge device."""

import os

__version__ = "0.1.0"

# The converters import TensorFlow-style C++ logging; keep its INFO chatter (oneDNN notices) off the console.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
