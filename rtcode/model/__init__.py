"""The facts rtcode reads from DICOM-RT files, its results and errors: frozen values with
units in their names and None for absent. Imports nothing else of rtcode."""
