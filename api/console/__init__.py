"""The operator console: server-rendered pages at / for people who sign in (engine/security/operators.py)."""
