"""Ingest over HTTP: authenticate, read within budget and deadlines, plan jobs, store them durably."""
