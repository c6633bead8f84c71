"""Built-in task cards (YAML); a package so importlib.resources finds exactly these."""
