"""The embedded lab: the whole probe topology on loopback, with fault injection."""
