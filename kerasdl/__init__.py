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
