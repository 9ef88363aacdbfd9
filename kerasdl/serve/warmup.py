"""Warm-up requests in TF Serving's format, written with every export and read by our server.

`assets.extra/tf_serving_warmup_requests` in a version directory is a TFRecord file of
`PredictionLog` protos (tensorflow_serving.apis); TensorFlow Serving runs each one before it
marks the version AVAILABLE (its "SavedModel warmup" guide), and so does kerasdl.serve. The
requests are all-zero batches at every size the batcher pads to, so that no client pays for
oneDNN's slow first call at a new batch shape.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kerasdl.serve.batching import BATCH_SIZES

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


def write(version_dir, model_name: str, input_shape: tuple, input_key: str = "inputs",
          signature_name: str = "serving_default", sizes=BATCH_SIZES) -> Path:
    """Write the warm-up file into `version_dir` (a SavedModel being exported); return its path."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = Path(version_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for size in sizes:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name))
            request.inputs[input_key].CopyFrom(tf.make_tensor_proto(np.zeros((size, *input_shape), "float32")))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read(version_dir) -> list[tuple[str, dict]]:
    """The warm-up file's predict requests as (signature name, {input: array}); [] when there is none."""
    path = Path(version_dir) / WARMUP_FILE
    if not path.is_file():
        return []
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    requests = []
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(record)
        if log.WhichOneof("log_type") != "predict_log":
            continue
        request = log.predict_log.request
        inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
        requests.append((request.model_spec.signature_name or "serving_default", inputs))
    return requests
