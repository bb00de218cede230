"""rtcode audit: billed charges checked against the plans' codes."""
