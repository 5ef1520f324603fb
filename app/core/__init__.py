"""Pure decisions: no faust, aiokafka, psycopg, asyncio, os or time in here.

Time and ids are parameters; every function is table-testable.
"""
