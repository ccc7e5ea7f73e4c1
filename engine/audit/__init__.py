"""Audit records, their group commit, the hash chain's verification, export and flood control."""
