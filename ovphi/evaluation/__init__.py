"""`ovphi eval`: how close a converted model stays to its reference (builtin evaluation set in builtin/)."""
