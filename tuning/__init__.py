"""Section 2.5.4: Keras Tuner searches over the MLP (see tuning/__main__.py)."""
