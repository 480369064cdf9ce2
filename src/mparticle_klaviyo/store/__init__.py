"""Durable job stores: the contract (base.py), SQLite and PostgreSQL, and the factory that opens either."""
