"""Verification of artifacts on real runtimes (TFLite Micro, LiteRT, ExecuTorch) and emulators."""
