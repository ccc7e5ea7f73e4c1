"""Aggregates: state folded from a stream's events. Pure functions, no I/O."""
