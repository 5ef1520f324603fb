"""The Faust app factory and the agents: thin shells around app/core."""
