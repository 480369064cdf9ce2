"""The long-running service: HTTP ingest into the job store, and delivery from it."""
