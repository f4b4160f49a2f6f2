"""Leg kinds: one module each, all driven by :mod:`t3probe.supervisor`."""
