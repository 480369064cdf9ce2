"""Durable job stores: the contract (base.py) and the embedded SQLite store."""
