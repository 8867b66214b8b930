"""What every exporter takes and gives, re-exported for code that imported it from here.

The records live in :mod:`edgekd.export.records`; the exporters are format plugins (:mod:`edgekd.formats`).
"""

from edgekd.export.records import Artifact, ExportContext
from edgekd.io import atomic_path, sha256_file

__all__ = ["Artifact", "ExportContext", "atomic_path", "sha256_file"]
