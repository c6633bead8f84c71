"""Scoring protocols: one module per benchmark family, registered by name for task cards."""
