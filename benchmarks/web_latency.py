"""Latency and throughput of ``POST /api/predict`` on a local server (loopback only).

    python benchmarks/web_latency.py [--model M] [--requests 100] [--concurrency 1 8]

Starts ``emoadapt serve`` in a subprocess on a free 127.0.0.1 port, sends one warm-up request
(the model loads lazily), then for each client concurrency sends ``--requests`` uploads of one
image (default: the shipped sample chelsea.jpg) from that many client threads. Prints a markdown
table: concurrency, requests, failures (non-200 answers, e.g. 503 when the server's slots stay
full), p50 and p95 latency in milliseconds, and requests per second; writes ``--out`` (default
benchmarks/results/web_latency.json) with the latencies and the provenance (model, weights sha256).
"""

from __future__ import annotations

import argparse
import http.client
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance, write_json  # noqa: E402
from benchmarks.lib.speed import model_identity, spread  # noqa: E402

BOUNDARY = "emoadapt-benchmark"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def multipart(image: bytes, name: str) -> bytes:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + image + f"\r\n--{BOUNDARY}--\r\n".encode()


def post(port: int, body: bytes) -> tuple[int, float]:
    """One request on a fresh connection: (HTTP status, seconds)."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/api/predict", body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - start
    finally:
        conn.close()


def wait_until_up(port: int, server: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with status {server.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"the server did not answer /healthz within {seconds:g} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a .safetensors file or shipped model name (default: the shipped model)")
    parser.add_argument("--image", help="image to upload (default: the shipped sample chelsea.jpg)")
    parser.add_argument("--requests", type=int, default=100, help="requests per concurrency level (default 100)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], help="client threads (default 1 8)")
    parser.add_argument("--server-concurrency", type=int, default=2, help="the server's model slots (default 2)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "web_latency.json"),
                        help="results JSON (latencies, percentiles and provenance)")
    args = parser.parse_args()
    levels = []

    image = Path(args.image or str(resources.files("emoadapt") / "samples" / "chelsea.jpg"))
    body = multipart(image.read_bytes(), image.name)
    port = free_port()
    command = [sys.executable, "-c", "import sys; from emoadapt.cli import main; sys.exit(main())", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--concurrency", str(args.server_concurrency)] + (["--model", args.model] if args.model else [])
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)  # access log dropped; errors shown on stderr
    try:
        wait_until_up(port, server)
        status, seconds = post(port, body)  # warm-up: loads the model
        if status != 200:
            sys.exit(f"warm-up request answered {status}")
        print(f"model: {args.model or 'shipped default'}, image {image.name} ({image.stat().st_size:,} bytes), "
              f"server slots {args.server_concurrency}, first request {seconds * 1000:.0f} ms\n")
        print("| concurrency | requests | failures | p50 ms | p95 ms | requests/s |")
        print("|---|---|---|---|---|---|")
        for concurrency in args.concurrency:
            start = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                results = list(pool.map(lambda _: post(port, body), range(args.requests)))
            wall = time.perf_counter() - start
            latencies = np.array([s for code, s in results if code == 200]) * 1000
            failures = sum(code != 200 for code, _ in results)
            p50, p95 = (np.percentile(latencies, [50, 95]) if latencies.size else (float("nan"),) * 2)
            print(f"| {concurrency} | {args.requests} | {failures} | {p50:.1f} | {p95:.1f} | "
                  f"{(len(results) - failures) / wall:.1f} |", flush=True)
            levels.append({"concurrency": concurrency, "requests": args.requests, "failures": int(failures),
                           "p50_ms": float(p50), "p95_ms": float(p95), "requests_per_s": (len(results) - failures) / wall,
                           "latency_ms": spread(latencies.tolist()) if latencies.size else None})
        name, sha = model_identity(args.model)
        write_json(args.out, {"what": "POST /api/predict latency of emoadapt serve per client concurrency",
                              "image": image.name, "image_bytes": image.stat().st_size,
                              "server_slots": args.server_concurrency, "first_request_ms": seconds * 1000,
                              "levels": levels, **provenance(model=name, weights_sha256=sha)})
        print(f"\nwrote {args.out}")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
