"""The `lockzero` command line (entry point: api.cli.main:main)."""
