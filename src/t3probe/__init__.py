"""t3probe: differential WebSocket probe that tells infra faults from users' networks."""

__version__ = "0.1.0"
