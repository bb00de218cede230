"""rtcode: suggest radiation-oncology planning codes from DICOM-RT exports.

The data flow, one module per step:

    read.py      files -> data sets, from their bytes or through pydicom (the only
                 module that touches files)
    extract.py   datasets -> typed, frozen facts (facts.py)
    link.py      facts -> plans with their dose and structure set
    metrics.py   control points -> aperture and modulation numbers (numpy only)
    classify.py  facts + policy -> code, category, evidence (pure function)
    render.py    results -> table, JSON, CSV
    scan.py      the pipeline that strings the steps together
    cli.py       the command line

rtcode is advisory: it never approves a plan or submits a claim.
"""

__version__ = "0.1.0"
