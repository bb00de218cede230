"""rtcode report: the per-patient report (text, JSON, HTML) with DVHs and figures."""
