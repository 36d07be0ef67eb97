"""A corpus of real architectures (small, untrained or briefly trained on offline data) for the route matrix: see registry.py."""
