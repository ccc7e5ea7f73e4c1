"""Commands: each decides on folded state and appends events through the unit of work."""
