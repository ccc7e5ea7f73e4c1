"""Key hierarchy, sealed values, tokens, scopes, operators' credentials and the outbound policy."""
