"""Where plans and charges come from besides a folder: DICOMweb, the storage listener
and its results store, billing files."""
