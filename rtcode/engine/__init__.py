"""The pipeline run over many files: the scanner, its cache and replay, the executors."""
