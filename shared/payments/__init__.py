"""Payments service: domain logic and the thin adapters every Lambda shares.

Import direction is one-way: ``functions/*/app.py`` -> domain modules -> ``payments.adapters``.
Only adapters import vendor SDKs (stripe, postgrest, psycopg, boto3, httpx).
"""
