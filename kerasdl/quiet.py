"""Keep TensorFlow's native start-up chatter out of a normal run, without hiding real errors.

TensorFlow's C++ code logs through absl before any log level applies (`TF_CPP_MIN_LOG_LEVEL`
does not reach these lines), so every command opened with lines like

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... port.cc:153] oneDNN custom operations are on. ...
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    E0000 ... cuda_platform.cc:52] failed call to cuInit: ... (303)

`install()` (called by every command-line entry point, never on import) puts a filter on file
descriptor 2 for the life of the command: a thread forwards every line written to stderr, by
Python or C++, except the known notices in NOISE. Anything else, errors included, passes.
TensorFlow's Python warning that a function was retraced is dropped too: the sections build
many small models in a loop on purpose, and the warning reads as a bug in the user's code.
KERASDL_TF_LOGS=1 turns the filter off and shows everything.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|\] oneDNN custom operations are on\."
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine"
    r"|cuda_platform\.cc:\d+\] failed call to cuInit: .*\(303\)"  # 303: no CUDA driver on this machine
    r"|cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized to use available CPU instructions"
    r"|^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\."
    r"|NodeDef mentions attribute use_unbounded_threadpool which is not in the op definition"
    r"|Unable to register cu(DNN|FFT|BLAS) factory: Attempting to register factory for plugin"
    # float16 on a CPU: devices.precision_policy says it in words, once, as a warning
    r"|util\.cc:\d+\] oneDNN supports DT_HALF only on platforms with AVX-512\. Falling back"
)
RETRACING = "triggered tf.function retracing"  # the sections build many small models on purpose
_state: dict = {}


def _not_retracing(record) -> bool:
    return RETRACING not in record.getMessage()


def install() -> None:
    """Filter stderr (fd 2) for the rest of the process; a no-op when KERASDL_TF_LOGS=1 or done already."""
    if os.environ.get("KERASDL_TF_LOGS") == "1":
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"  # everything, the lines TensorFlow filters itself included
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the lines TensorFlow does filter itself
    if os.environ.get("KERASDL_TF_LOGS") == "1" or _state:
        return
    import logging

    logging.getLogger("tensorflow").addFilter(_not_retracing)
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    pump = threading.Thread(target=_forward, args=(read_end, original), name="kerasdl-stderr", daemon=True)
    pump.start()
    _state.update(original=original, pump=pump)
    atexit.register(uninstall)


def _forward(read_end: int, original: int) -> None:
    with os.fdopen(read_end, "rb") as pipe, os.fdopen(os.dup(original), "wb", buffering=0) as out:
        for line in pipe:
            if not NOISE.search(line.decode("utf-8", "replace")):
                out.write(line)


def uninstall() -> None:
    """Give fd 2 back and let the filter drain what was written before."""
    if not _state:
        return
    sys.stderr.flush()
    os.dup2(_state["original"], 2)  # the pipe's last writer closes: the thread reads to the end
    _state["pump"].join(timeout=5)
    os.close(_state["original"])
    _state.clear()
