"""Protocol decoders, receivers, scraper, syslog listener, host agent and simulator.

Decoders are pure functions (bytes -> dataclasses from ``ingest.types``); only
``webapp.telemetry.writer`` touches the store.
"""
