"""``t3probe attribute``: answer "I dropped at 14:03" from Prometheus or a probe's /events.

Pure parts (no I/O): :mod:`.timeparse` (TIME and the window around it), :mod:`.model`
(the evidence), :mod:`.promql` and :mod:`.events` (turning a source's answers into
evidence), :mod:`.verdict` (evidence → verdict, through the probe's own attribution
engine) and :mod:`.report` (table and JSON). I/O: :mod:`.http` (bounded JSON fetches) and
:mod:`.sources` (asking Prometheus or a probe). :mod:`.cli` glues them to exit codes.
"""
