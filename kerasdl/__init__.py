"""kerasdl: a first deep-learning assignment, done properly in Keras."""

__version__ = "0.1.0"

import os as _os

# TensorFlow's C++ start-up chatter (CPU features, missing CUDA) is noise for our users.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
