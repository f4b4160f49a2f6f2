"""Connect to a fixed address; Host, SNI and certificate checks stay the URL's host."""

from __future__ import annotations

from t3probe.resolvers.base import Resolution


class PinnedResolver:
    def __init__(self, address: str) -> None:
        self._resolution = Resolution((address,))

    async def resolve(self, host: str) -> Resolution:
        return self._resolution

    async def close(self) -> None:
        return None
