"""Load test of `python -m kerasdl.serve`: concurrent single-image cnn predictions in TF Serving's format.

    python bench/serve_load.py --models saved_models [--clients 16] [--requests 5000]
    python bench/serve_load.py --models saved_models --switch          # a new version published mid-run
    python bench/serve_load.py --models saved_models --clients 256 --seconds 20   # overload
    python bench/serve_load.py --url http://127.0.0.1:8501 --model cnn

Starts the server on a free 127.0.0.1 port (or uses --url), then `--clients` keep-alive
connections send POST /v1/models/<model>:predict requests, each one MNIST test image as
{"instances": [...]}, until `--requests` have been sent or `--seconds` have passed. Every
request is counted where it ends: answered 200 (right or wrong digit), answered 503 (shed
under overload), answered with another status, timed out (no answer within --timeout), or
broken (the connection failed); `lost` is the requests sent and never answered. With
--switch, a new version of the model is published a third of the way through (a copy of the
newest version, staged and renamed in as kerasdl.artifacts.export does) and the report gives
when the server served it and the latency while it switched. After the run, the time until
one lone request is answered 200 again is the recovery time. Results go to
bench/results/serve_load.json. Traffic goes to this machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kerasdl.atomic import write_text  # noqa: E402


STALL_WAIT = 15.0  # seconds after opening by which the server (--header-timeout 10) should close a stalled connection


def start_server(models: Path, model: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    """`python -m kerasdl.serve --port 0` and its URL, once it answers: the kernel picks a free port as
    the server binds it (no check-then-bind race), and the server names it in its "serving on" line."""
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, "-m", "kerasdl.serve", "--models", str(models), "--port", "0",
                             "--quiet", *extra], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, text=True)
    deadline, url = time.time() + 120, None
    while time.time() < deadline:
        log.seek(0)
        said = log.read()
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}: {said[-2000:]}")
        bound = re.search(r"serving on (http://127\.0\.0\.1:\d+)/", said)
        url = url or (bound and bound.group(1))
        try:
            if url:
                urllib.request.urlopen(f"{url}/v1/models/{model}", timeout=1).read()
                return proc, url
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not answer within 120 s")


def test_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    from kerasdl import data

    (_, _), (x_test, y_test) = data.load_mnist()
    return x_test[:n].astype("float32") / 255.0, y_test[:n]


async def ask(host: str, port: int, path: str, body: bytes, timeout: float, conn: list) -> tuple[int, bytes]:
    """One request on the keep-alive connection in `conn` ([reader, writer] or [None, None])."""
    if conn[1] is None:
        conn[:] = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    reader, writer = conn
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status = int(head.split(b" ", 2)[1])
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    payload = await asyncio.wait_for(reader.readexactly(length), timeout)
    if b"connection: close" in head.lower():
        writer.close()
        conn[:] = [None, None]
    return status, payload


async def client(host, port, path, bodies, labels, plan, results: list, timeout: float, backoff: bool = False) -> None:
    """One keep-alive connection: send requests until the plan says stop; record how each one ended.
    With `backoff`, wait the server's Retry-After (1 s) after a 503, as a polite client does."""
    conn = [None, None]
    while (i := plan.next()) is not None:
        start = time.perf_counter()
        try:
            status, payload = await ask(host, port, path, bodies[i % len(bodies)], timeout, conn)
            if status == 200:
                digit = int(np.argmax(json.loads(payload)["predictions"][0]))
                outcome = "right" if digit == int(labels[i % len(labels)]) else "wrong"
            else:
                outcome = f"status {status}"
        except asyncio.TimeoutError:
            outcome = "timed out"
        except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration) as exc:
            outcome = f"broken {exc.__class__.__name__}"
        if not outcome.startswith(("right", "wrong", "status")) and conn[1] is not None:
            conn[1].close()
            conn[:] = [None, None]
        results.append((start, time.perf_counter(), outcome))
        if backoff and outcome == "status 503":
            await asyncio.sleep(1.0)
    if conn[1] is not None:
        conn[1].close()


class Plan:
    """Request numbers to send: `requests` in all, or as many as fit in `seconds`."""

    def __init__(self, requests: int, seconds: float | None):
        self.requests, self.seconds, self.sent = requests, seconds, 0
        self.start = time.perf_counter()

    def next(self) -> int | None:
        if self.seconds is not None:
            if time.perf_counter() - self.start >= self.seconds:
                return None
        elif self.sent >= self.requests:
            return None
        self.sent += 1
        return self.sent - 1


def version_status(url: str, model: str) -> dict:
    with urllib.request.urlopen(f"{url}/v1/models/{model}", timeout=10) as answer:
        return {int(s["version"]): s["state"] for s in json.loads(answer.read())["model_version_status"]}


async def publish_new_version(models: Path, model: str, url: str, after: float, marks: dict) -> None:
    """After `after` seconds, publish a copy of the newest version as the next one (staged, then one
    rename, as artifacts.export does); record when, and when the server reports it AVAILABLE."""
    from kerasdl import artifacts  # imported (TensorFlow with it) before the load starts: see load()

    await asyncio.sleep(after)
    model_dir = models / model
    newest = artifacts.versions(model_dir)[-1]
    staged = model_dir / f".export-bench-{os.getpid()}"
    await asyncio.to_thread(shutil.copytree, model_dir / str(newest), staged,
                            ignore=shutil.ignore_patterns(artifacts.SERVING_DIR))
    marks["published"] = time.perf_counter()
    os.rename(staged, model_dir / str(newest + 1))
    marks["version"] = newest + 1
    while time.perf_counter() - marks["published"] < 120:
        states = await asyncio.to_thread(version_status, url, model)
        if states.get(newest + 1) == "AVAILABLE":
            marks["served"] = time.perf_counter()
            return
        await asyncio.sleep(0.05)


def percentiles(latencies_ms: list) -> dict:
    a = np.array(latencies_ms)
    return {q: round(float(np.percentile(a, p)), 2) if len(a) else None
            for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))}


async def recovery(host: str, port: int, path: str, body: bytes, limit: float = 60) -> float | None:
    """Seconds from the end of the load until a lone request is answered 200."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        conn = [None, None]
        try:
            status, _ = await ask(host, port, path, body, 10, conn)
            if status == 200:
                return round(time.perf_counter() - start, 3)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            if conn[1] is not None:
                conn[1].close()
        await asyncio.sleep(0.01)
    return None


async def stall(host: str, port: int, n: int) -> list:
    """`n` connections that send half a request head and then nothing (the server should close them)."""
    stalled = []
    for _ in range(n):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /v1/models/cnn:predict HTTP/1.1\r\nHost: x\r\nContent-Le")
        await writer.drain()
        stalled.append((reader, writer))
    return stalled


async def closed_by_server(stalled: list, until: float) -> int:
    """How many of the stalled connections the server has closed by `until` (a perf_counter time)."""
    closed = 0
    for reader, writer in stalled:
        try:
            closed += await asyncio.wait_for(reader.read(1), max(0.01, until - time.perf_counter())) == b""
        except (asyncio.TimeoutError, OSError):
            pass
        writer.close()
    return closed


async def load(url: str, model: str, clients: int, requests: int, seconds: float | None, timeout: float,
               switch_models: Path | None, stalled_connections: int = 0, backoff: bool = False) -> dict:
    parsed = urlparse(url)
    stalled_at = time.perf_counter()
    stalled = await stall(parsed.hostname, parsed.port, stalled_connections)
    images, labels = test_images(1000)
    bodies = [json.dumps({"instances": [im[..., None].round(4).tolist()]}).encode() for im in images]
    path = f"/v1/models/{model}:predict"
    if switch_models is not None:
        from kerasdl import artifacts  # noqa: F401  (seconds of importing TensorFlow: not inside the timed run)
    plan = Plan(requests, seconds)
    results: list = []
    marks: dict = {}
    tasks = [client(parsed.hostname, parsed.port, path, bodies, labels, plan, results, timeout, backoff)
             for _ in range(clients)]
    if switch_models is not None:
        tasks.append(publish_new_version(switch_models, model, url, (seconds or 30) / 3, marks))
    start = time.perf_counter()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    recovered = await recovery(parsed.hostname, parsed.port, path, bodies[0])
    stalled_closed = await closed_by_server(stalled, stalled_at + STALL_WAIT)

    kinds: dict = {}
    for _, _, outcome in results:
        kinds[outcome] = kinds.get(outcome, 0) + 1
    ok = [(t0, t1) for t0, t1, outcome in results if outcome in ("right", "wrong")]
    answered = [r for r in results if not r[2].startswith(("timed out", "broken"))]
    shed = [(t1 - t0) * 1000 for t0, t1, outcome in results if outcome == "status 503"]
    result = {
        "clients": clients, "sent": plan.sent, "answered": len(answered), "answered_ok": len(ok),
        "shed_503": len(shed), "other_errors": sum(n for k, n in kinds.items() if k.startswith("status") and k != "status 503"),
        "timed_out": kinds.get("timed out", 0), "broken": sum(n for k, n in kinds.items() if k.startswith("broken")),
        "lost": plan.sent - len(answered), "outcomes": kinds,
        "share_503": round(len(shed) / max(1, len(answered)), 4),
        "test_accuracy_of_answers": round(kinds.get("right", 0) / max(1, len(ok)), 4),
        "seconds": round(elapsed, 2), "predictions_per_second": round(len(ok) / elapsed, 1),
        "latency_ms": percentiles([(t1 - t0) * 1000 for t0, t1 in ok]),
        "latency_503_ms": percentiles(shed), "recovery_seconds": recovered,
        "slowest": [{"at_s": round(t0 - start, 2), "ms": round((t1 - t0) * 1000, 1), "outcome": o}
                    for t0, t1, o in sorted(results, key=lambda r: r[0] - r[1])[:5]],
        "stalled_connections": stalled_connections, f"stalled_closed_by_server_within_{STALL_WAIT:g}s": stalled_closed,
    }
    if switch_models is not None:
        if "served" not in marks:
            result["switch"] = {"error": "the new version was not reported AVAILABLE within 120 s"}
        else:
            window = [(t1 - t0) * 1000 for t0, t1 in ok if t1 >= marks["published"] and t0 <= marks["served"] + 1.0]
            during = [o for t0, t1, o in results if t1 >= marks["published"] and t0 <= marks["served"] + 1.0]
            result["switch"] = {
                "version": marks["version"], "published_at_s": round(marks["published"] - start, 2),
                "seconds_to_serve": round(marks["served"] - marks["published"], 2),
                "requests_during": len(during), "errors_during": sum(1 for o in during if o not in ("right", "wrong")),
                "latency_ms_during": percentiles(window),
            }
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/serve_load.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=ROOT / "saved_models",
                   help="exports to serve (must hold the --model); ignored with --url (default: saved_models)")
    p.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8501 (default: start one on a free port)")
    p.add_argument("--model", default="cnn", help="model to ask (default: cnn)")
    p.add_argument("--clients", type=int, default=16, help="concurrent keep-alive connections (default: 16)")
    p.add_argument("--requests", type=int, default=5000, help="single-image predictions in all (default: 5000)")
    p.add_argument("--seconds", type=float, help="send for this long instead of a number of --requests")
    p.add_argument("--switch", action="store_true",
                   help="publish a new version of --model in --models a third of the way through (needs --models, "
                   "and writes into it: use a copy)")
    p.add_argument("--stalled", type=int, default=0,
                   help="first open this many connections that send half a request head and stall (default: 0)")
    p.add_argument("--backoff", action="store_true",
                   help="clients wait the server's Retry-After (1 s) after a 503 instead of asking again at once")
    p.add_argument("--no-batching", action="store_true", help="start the server with --no-batching")
    p.add_argument("--server-args", default="", help="more flags for the server it starts, e.g. '--max-queue 32'")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds one request may take (default: 30)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve_load.json",
                   help="where the JSON result goes (default: bench/results/serve_load.json)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.url and urlparse(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"--url {args.url}: this load test only targets this machine (127.0.0.1 or localhost)")
    if args.switch and args.seconds is None:
        args.seconds = 30.0
    server = None
    url = args.url
    if not url:
        extra = (["--no-batching"] if args.no_batching else []) + args.server_args.split()
        server, url = start_server(args.models, args.model, extra)
    try:
        result = asyncio.run(load(url, args.model, args.clients, args.requests, args.seconds, args.timeout,
                                  args.models if args.switch else None, args.stalled, args.backoff))
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    result.update(date=datetime.now(timezone.utc).isoformat(timespec="seconds"), model=args.model,
                  machine=f"{cpu}, {os.cpu_count()} cores, {platform.system()}",
                  command="python bench/serve_load.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
