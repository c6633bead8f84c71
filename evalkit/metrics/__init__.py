"""Metrics: pure functions of (targets, predictions), tested against hand-computed values."""
