"""Step 1, read: the only files-to-facts step. Finds and sniffs files, walks DICOM bytes
within limits, and extracts Plan, StructureSet and Dose facts."""
