"""The embedded defaults: the tansu broker and PostgreSQL started from PyPI packages.

Used by `hookstream dev` and by the test session; never by production, which
runs Apache Kafka and PostgreSQL (docker-compose.yml).
"""
