"""Causal mitigation engine for unhealthy nodes (see docs/mitigation.md)."""
