"""Deterministic simulation: the integration through seeded months of faults."""
