"""hookstream: webhook deliveries and producer events into serialized, measured syncs on Kafka."""

__version__ = "0.1.0"
