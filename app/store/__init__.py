"""PostgreSQL: the async pool, migrations, and (later) the projections."""
