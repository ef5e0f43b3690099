"""The signing context of an operator's evaluation-count report (shared by operator and broker)."""

REPORT_CONTEXT = b"olievlek/v1/evaluation-report\x00"
