"""Step 5, render: scan results as table, JSON, JSONL, CSV; de-identification; the one
atomic writer and the guard that keeps outputs off inputs."""
