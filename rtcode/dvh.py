"""DVH computation through dicompyler-core, made to work under pydicom 3.

dicompyler-core 0.5.6 (its latest release) does ``from pydicom.dicomio import
read_file``; pydicom 3 removed ``read_file`` in favour of ``dcmread``. rtcode
depends on pydicom 3, so before importing dicompyler-core it supplies that one
name, only if it is missing. No other part of pydicom is touched, and nothing
is imported until a DVH is actually computed (scans that only need ROI names
never load dicompyler-core or parse contour points).
"""

from __future__ import annotations

from types import ModuleType


def dicompyler() -> tuple[ModuleType, ModuleType]:
    """Import and return ``(dicompylercore.dicomparser, dicompylercore.dvhcalc)``."""
    import pydicom
    import pydicom.dicomio

    if not hasattr(pydicom.dicomio, "read_file"):
        pydicom.dicomio.read_file = pydicom.dcmread  # the name 0.5.6 imports
    from dicompylercore import dicomparser, dvhcalc

    return dicomparser, dvhcalc
