"""The sync stages' work, without Faust: planning a job and writing a batch of it.

The agents in `app.stream.plan` and `app.stream.batches` consume records and
call these; tests drive them directly against a real repository and a real
PostgreSQL (the convergence property test interleaves them at will).
"""
