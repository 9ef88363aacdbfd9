"""kerasdl: a first deep-learning assignment, done properly in Keras."""

__version__ = "0.1.0"

# The Keras dtype policies every training command takes as --precision (kerasdl.training applies
# them); here, free of TensorFlow, so that a --help needs no TensorFlow import.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# What --precision accepts: a policy, or "auto" (precision_arg resolves it before anything runs).
PRECISION_CHOICES = (*PRECISIONS, "auto")
PRECISION_METAVAR = "{" + ",".join(PRECISION_CHOICES) + "}"
AUTO_PRECISION_HELP = ("auto: mixed_bfloat16 where the CPU computes bfloat16 natively (AVX-512 BF16 or AMX) or an "
                       "NVIDIA GPU of compute capability 8.0 or newer is present, float32 elsewhere")


# The CPU features that decide which precision and kernels pay off here (docs/performance.md).
CPU_FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu() -> dict:
    """This machine's CPU model, CPU count and its flags of interest, read from /proc/cpuinfo
    (no TensorFlow): every timing we print or write says which CPU it came from."""
    import os
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                 platform.processor() or "unknown CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    present = [f for f in CPU_FLAGS_OF_INTEREST if f in flags]
    return {"model": model, "cpus": os.cpu_count(), "flags": present,
            "text": f"{model}, {os.cpu_count()} CPUs, flags: {' '.join(present) or 'none of ' + ' '.join(CPU_FLAGS_OF_INTEREST)}"}


def use_onednn(on: bool = True) -> None:
    """Whether TensorFlow runs its CPU kernels through oneDNN in this process and the processes it
    starts (`TF_ENABLE_ONEDNN_OPTS`), unless the user's environment already says either way. It must
    run before TensorFlow is imported: the command-line entry points (kerasdl.errors.run_cli), the
    report's worker processes and the test suite call it.

    TensorFlow turns oneDNN on by itself only on CPUs with AVX-512 VNNI, BF16 or AMX. On our
    2-core AMD EPYC (AVX2, FMA) it made one epoch of the 784-512-10 MLP 0.87x and one of the
    convnet 0.62x as costly in CPU time (`python bench/kernels.py`), but the toy section's
    four-input convnet about 20% slower (oneDNN's set-up per op outweighs its kernels on tensors
    that small; docs/performance.md, "Kernels"), so the toy command passes `on=False`. oneDNN sums in another
    order than Eigen, so float32 results differ in the last bits (and a long run drifts within
    run-to-run noise), not in meaning; the same seed
    still gives bit-identical reruns. The value set here is also kept in KERASDL_ONEDNN, so that a
    later call (a report worker about to run the toy stage) may choose again while
    `TF_ENABLE_ONEDNN_OPTS` still holds kerasdl's value; one the user sets, before or after,
    always stands.
    """
    import os

    current = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if current is None or current == os.environ.get("KERASDL_ONEDNN"):
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = os.environ["KERASDL_ONEDNN"] = "1" if on else "0"


def cpu_has_bf16() -> bool | None:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX); None when it cannot be told."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


def gpu_has_bf16() -> bool:
    """Whether nvidia-smi lists a GPU of compute capability 8.0 or newer (Ampere on: bfloat16 tensor cores)."""
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return False
    try:
        caps = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10).stdout.split()
        return any(float(c) >= 8.0 for c in caps)
    except (OSError, ValueError, subprocess.SubprocessError):
        return False


def precision_arg(text: str) -> str:
    """An argparse type for --precision: a Keras policy as it is, "auto" resolved for this machine
    (so summaries and model cards record the policy that actually ran)."""
    import argparse

    if text == "auto":
        return "mixed_bfloat16" if cpu_has_bf16() or gpu_has_bf16() else "float32"
    if text not in PRECISIONS:
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(PRECISION_CHOICES)})")
    return text

# Importing kerasdl changes no global state: the command-line entry points alone quieten
# TensorFlow's start-up chatter (kerasdl.quiet) and draw figures off-screen.
