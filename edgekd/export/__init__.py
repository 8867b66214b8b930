"""Exporters: turn a trained student into deployable files, one format plugin per format (:mod:`edgekd.formats`).

:func:`export_student` runs the formats a target needs into a build folder and returns an :class:`ExportRecord`;
:func:`load_export` reads one back, checked.
"""

from edgekd.export.records import Artifact, ExportContext, ExportRecord, check_artifacts, load_export
from edgekd.export.student import export_student
from edgekd.io import sha256_file

__all__ = ["Artifact", "ExportContext", "ExportRecord", "check_artifacts", "export_student", "load_export",
           "sha256_file"]
