"""`ovphi eval`'s library: how close a converted model stays to its reference (evaluate.py, metrics.py, similarity.py)."""
