"""Files to facts. ``elements`` (the byte layer: VR tables, the element header iterator,
file meta, counts) <- ``views`` (data sets behind the ``DataSet`` protocol) <- ``read``
(files found, sniffed and read within limits) and ``extract`` (Plan, StructureSet and
Dose facts; ``extract_bulk``: the fast path's control points)."""
