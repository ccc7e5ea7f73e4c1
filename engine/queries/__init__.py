"""Queries: reads for agents, the CLI and the console, served from the read models."""
