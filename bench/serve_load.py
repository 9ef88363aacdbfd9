"""Load test of `python -m kerasdl.serve`: concurrent single-image cnn predictions in TF Serving's format.

    python bench/serve_load.py --models saved_models [--clients 16] [--requests 5000]
    python bench/serve_load.py --url http://127.0.0.1:8501 --model cnn

Starts the server on a free 127.0.0.1 port (or uses --url), then `--clients` keep-alive
connections send `--requests` POST /v1/models/<model>:predict requests in all, each one MNIST
test image as {"instances": [...]}. Reports throughput, p50/p99 latency, errors (non-200
answers, wrong answers, broken connections) and lost requests (sent, never answered), and
writes them to bench/results/serve_load.json. Traffic goes to this machine only; the run
is bounded by the request count and --timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(models: Path, port: int, extra: list[str]) -> subprocess.Popen:
    """`python -m kerasdl.serve` on 127.0.0.1:port, once it answers."""
    proc = subprocess.Popen([sys.executable, "-m", "kerasdl.serve", "--models", str(models), "--port", str(port),
                             "--quiet", *extra], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models/cnn", timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not answer within 120 s")


def test_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    from kerasdl import data

    (_, _), (x_test, y_test) = data.load_mnist()
    return x_test[:n].astype("float32") / 255.0, y_test[:n]


async def client(host: str, port: int, path: str, bodies: list[bytes], labels, queue: asyncio.Queue,
                 results: list, timeout: float) -> None:
    """One keep-alive connection: take request numbers from `queue` until it is empty."""
    reader = writer = None
    while True:
        try:
            i = queue.get_nowait()
        except asyncio.QueueEmpty:
            break
        body = bodies[i % len(bodies)]
        start = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            status = int(head.split(b" ", 2)[1])
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            payload = await asyncio.wait_for(reader.readexactly(length), timeout)
            if status == 200:
                digit = int(np.argmax(json.loads(payload)["predictions"][0]))
                results.append((time.perf_counter() - start, "ok", digit == int(labels[i % len(labels)])))
            else:
                results.append((time.perf_counter() - start, f"status {status}", False))
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, StopIteration) as exc:
            results.append((time.perf_counter() - start, f"error {exc.__class__.__name__}", False))
            if writer is not None:
                writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def load(url: str, model: str, clients: int, requests: int, timeout: float) -> dict:
    parsed = urlparse(url)
    images, labels = test_images(min(requests, 1000))
    bodies = [json.dumps({"instances": [im[..., None].round(4).tolist()]}).encode() for im in images]
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    results: list = []
    start = time.perf_counter()
    await asyncio.gather(*(client(parsed.hostname, parsed.port, f"/v1/models/{model}:predict", bodies, labels,
                                  queue, results, timeout) for _ in range(clients)))
    seconds = time.perf_counter() - start
    latencies = np.array([t for t, outcome, _ in results if outcome == "ok"]) * 1000
    errors: dict = {}
    for _, outcome, _ in results:
        if outcome != "ok":
            errors[outcome] = errors.get(outcome, 0) + 1
    return {
        "requests": requests, "clients": clients, "answered_ok": int(len(latencies)),
        "test_accuracy_of_answers": round(sum(right for _, _, right in results) / max(1, len(latencies)), 4),
        "errors": sum(errors.values()), "error_kinds": errors, "lost": requests - len(results),
        "seconds": round(seconds, 2), "predictions_per_second": round(len(latencies) / seconds, 1),
        "latency_ms": {q: round(float(np.percentile(latencies, p)), 2) if len(latencies) else None
                       for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=ROOT / "saved_models",
                   help="exports to serve (must hold the --model); ignored with --url (default: saved_models)")
    p.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8501 (default: start one on a free port)")
    p.add_argument("--model", default="cnn", help="model to ask (default: cnn)")
    p.add_argument("--clients", type=int, default=16, help="concurrent keep-alive connections (default: 16)")
    p.add_argument("--requests", type=int, default=5000, help="single-image predictions in all (default: 5000)")
    p.add_argument("--no-batching", action="store_true", help="start the server with --no-batching")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds one request may take (default: 30)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve_load.json",
                   help="where the JSON result goes (default: bench/results/serve_load.json)")
    args = p.parse_args(argv)
    if args.url and urlparse(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"--url {args.url}: this load test only targets this machine (127.0.0.1 or localhost)")
    server = None
    url = args.url
    if not url:
        port = free_port()
        server = start_server(args.models, port, ["--no-batching"] if args.no_batching else [])
        url = f"http://127.0.0.1:{port}"
    try:
        result = asyncio.run(load(url, args.model, args.clients, args.requests, args.timeout))
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
    result.update(date=datetime.now(timezone.utc).isoformat(timespec="seconds"), model=args.model,
                  machine=f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
                  command="python bench/serve_load.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, args.out)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
