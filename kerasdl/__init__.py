"""kerasdl: a first deep-learning assignment, done properly in Keras."""

__version__ = "0.1.0"

# Importing kerasdl changes no global state: the command-line entry points alone quieten
# TensorFlow's start-up chatter (kerasdl.quiet) and draw figures off-screen.
