"""A model server for every export in saved_models/, speaking TensorFlow Serving's REST API.

    python -m kerasdl.serve [--models saved_models] [--host 127.0.0.1] [--port 8501]

A client written for TensorFlow Serving works against it unchanged:

    GET  /v1/models/<name>[/versions/<v>]              version status
    GET  /v1/models/<name>[/versions/<v>]/metadata     the signature_def of every signature
    POST /v1/models/<name>[/versions/<v>]:predict      {"instances": [...]} -> {"predictions": [...]}
                                                       {"inputs": ...}      -> {"outputs": ...}
    GET  /monitoring/prometheus/metrics                Prometheus metrics, at TF Serving's path

Errors are `{"error": "<one line>"}` with TF Serving's status codes. For people rather than
programs, `POST /v1/digits:classify` takes an image, normalises it the MNIST way
(`kerasdl.preprocess`) and answers every classifier's ten probabilities and the encoder's 2-D
code; `POST /v1/digits:read` takes a picture of a number and answers it read digit by digit by
every classifier; `GET /v1/digits/latent` gives the test digits' codes on the autoencoder's and PCA's
planes; `/` is a page to draw a digit on (kerasdl/web/).

One job per module:

    protocol   TF Serving's URLs, request/response formats, status, metadata and errors
    limits     bounds on every request: body size and time, header time, admission (fast 503s)
    batching   concurrent requests to one signature run as one model call
    store      the models directory, polled: versions loaded, warmed, switched, unloaded
    warmup     TF Serving's assets.extra/tf_serving_warmup_requests, written at export, read at load
    metrics    Prometheus counters and histograms
    page       the drawing page's backend (uploads read safely, every classifier asked)
    app        the route table, the app and the command line
"""

from kerasdl.serve.app import cli, create_app, main, parser

__all__ = ["cli", "create_app", "main", "parser"]
