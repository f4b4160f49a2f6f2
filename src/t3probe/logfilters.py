"""Log hygiene: a malformed request from a client is one line, not a traceback.

aiohttp logs every request it cannot parse (an 8 KB request line, a garbage header)
with a full traceback; anyone able to reach the port could fill the log with them.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

MAX_REASON = 160


class OneLineBadRequests(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            reason = " ".join(str(error.message).split())[:MAX_REASON]
            record.msg = f"{record.getMessage()}: bad request refused ({error.code}): {reason}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def install() -> None:
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, OneLineBadRequests) for f in logger.filters):
        logger.addFilter(OneLineBadRequests())
