"""Seeing what the gateway does: Prometheus metrics (`metrics`: a meter of call records and an
observer of the core's hooks; `requests`: per-front-door HTTP counts and times; `multiprocess`:
one set for `--workers N`), the per-call access line (`access_log`) and JSON logs (`json_log`).

The core knows none of this: it hands call records to a Meter and events to an Observer
(metering/hooks.py); what listens is wired in gateway.py. Traces can plug in the same way."""
