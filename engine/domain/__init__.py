"""The domain: events, aggregates folded from them, identifiers, errors and time. No I/O."""
