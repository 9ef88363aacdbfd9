"""kerasdl: a first deep-learning assignment, done properly in Keras."""

__version__ = "0.1.0"

# The Keras dtype policies every training command takes as --precision (kerasdl.training applies
# them); here, free of TensorFlow, so that a --help needs no TensorFlow import.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")

# Importing kerasdl changes no global state: the command-line entry points alone quieten
# TensorFlow's start-up chatter (kerasdl.quiet) and draw figures off-screen.
