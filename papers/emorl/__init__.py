"""Replication of one paper (see papers/README.md for its status)."""
