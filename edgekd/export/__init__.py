"""Exporters: turn a trained student into deployable files, one registered exporter per format.

``tflite`` (LiteRT / TFLite Micro), ``pte`` (ExecuTorch + XNNPACK) and ``c`` (the .tflite as a C array for
TFLite Micro firmware). :func:`export_student` runs the ones a target needs into a build folder.
"""

from edgekd.export import csource, pte, tflite  # noqa: F401  (registers the exporters)
from edgekd.export.core import EXPORTERS, Artifact, ExportContext, get_exporter, register_exporter, sha256_file
from edgekd.export.student import export_student, load_export

__all__ = ["EXPORTERS", "Artifact", "ExportContext", "export_student", "get_exporter", "load_export",
           "register_exporter", "sha256_file"]
