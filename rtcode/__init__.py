"""rtcode: suggest radiation-oncology planning codes from DICOM-RT exports.

One package per step, imports flowing one way: model <- dicom (read, extract) <- link
<- measure <- coding (classify) <- output (render) <- engine (the pipeline) <- sources,
audit, report <- cli. The README's Design section maps them.

rtcode is advisory: it never approves a plan or submits a claim.
"""

__version__ = "0.1.0"
