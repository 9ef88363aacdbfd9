"""A model server for every export in saved_models/, speaking TensorFlow Serving's REST API.

    python -m kerasdl.serve [--models saved_models] [--host 127.0.0.1] [--port 8501]

A client written for TensorFlow Serving works against it unchanged:

    GET  /v1/models/<name>[/versions/<v>]              version status
    GET  /v1/models/<name>[/versions/<v>]/metadata     the signature_def of every signature
    POST /v1/models/<name>[/versions/<v>]:predict      {"instances": [...]} -> {"predictions": [...]}
                                                       {"inputs": ...}      -> {"outputs": ...}

Errors are `{"error": "<one line>"}` with 400, 404 or 413, as TensorFlow Serving gives them.
For people rather than programs, `POST /v1/digits:classify` takes an image (PNG/JPEG bytes),
normalises it the MNIST way (`kerasdl.preprocess`) and answers every classifier's ten
probabilities and the encoder's 2-D code; `GET /v1/digits/latent` gives the test digits' codes
on the autoencoder's and PCA's planes; `/` is a page to draw a digit on (kerasdl/web/).

Each model's newest version is loaded once at start with `tf.saved_model.load` (TensorFlow
Serving's default "latest" policy) and run in a worker thread, off the event loop.
"""


from kerasdl.serve.app import cli, create_app, main, parser

__all__ = ["cli", "create_app", "main", "parser"]
