"""`hookstream ingress`: the thin aiohttp service that verifies deliveries and publishes them durably.

`app.ingress.app.create_app` builds the application, `app.ingress.publisher`
holds the Kafka producer, `app.ingress.server` runs one or several processes.
"""
