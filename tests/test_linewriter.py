"""The stdout writer thread: a full or closed stdout must neither block nor fail the probe."""

from __future__ import annotations

import io

from t3probe.linewriter import LineWriter


def test_line_writer_drops_rather_than_blocks_and_survives_a_closed_stream() -> None:
    stream = io.StringIO()
    writer = LineWriter(stream, capacity=4)
    writer("one")
    writer.close()
    assert stream.getvalue() == "one\n"
    closed = io.StringIO()
    closed.close()
    broken = LineWriter(closed, capacity=4)
    for index in range(100):
        broken(f"line {index}")  # must neither raise nor block
    broken.close()
    assert broken.dropped > 0
