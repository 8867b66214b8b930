"""edgekd: distil PyTorch teachers into small quantized students that fit a named edge device."""

__version__ = "0.1.0"
