"""The web server under load and faults (issue #36), on loopback, bounded in requests and time.

    python benchmarks/server_load.py [--model M] [--out benchmarks/results/server_load.json]
    python benchmarks/server_load.py --table benchmarks/results/server_load.json   # the docs table

Starts ``emoadapt serve`` (its defaults: 2 predict slots, 2 explain slots, read timeout 10 s,
shutdown timeout 5 s; ``--timeout`` raised to ``--server-timeout`` so that explanations finish
on a busy CPU) on a free 127.0.0.1 port and measures, in this order:

1. predictions alone: ``--predicts`` requests from 2 client threads (p50/p95 ms, failures);
2. predictions while two explanations run: two ``/api/explain`` requests at the default depth,
   and 2 client threads sending predictions until both explanations have answered;
3. a slow client (request head and half the body, then silence) and a half-sent head, while
   predictions go on: seconds until the server cuts each off (answer and status), predictions
   served meanwhile;
4. malformed requests: a truncated multipart body, a non-HTTP request line, a client that
   leaves mid-upload (the server log must hold one line for it and no traceback);
5. memory: explanations two at a time until ``--explanations`` in all (counting those above),
   then ``--layer-jobs`` layer-wise grids two at a time (at ``--layer-depth``), the server's
   resident memory (VmRSS) after each phase and its peak (VmHWM) from /proc;
6. shutdown: a layer job running and a silent client connected, then SIGTERM: seconds until the
   process exits, and the log line reporting the cancelled job.

Writes a JSON results file (with provenance: command, date, cores, model, weights sha256, git
commit) and prints the markdown table of docs/reliability.md. Every wait is bounded
(``--time-limit`` seconds for the whole run).
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance as lib_provenance, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BOUNDARY = "emoadapt-load"
TARGETS = {"predict_p95_ms": 300, "predict_failures": 0, "shutdown_s": 10, "rss_mb": 2048}


# --- provenance --------------------------------------------------------------------------

def provenance(model: str) -> dict:
    """The provenance block of :mod:`benchmarks.lib.provenance`, with the weights sha256 of a
    shipped model (None for a weights file)."""
    from emoadapt.models.registry import get_preset, list_models

    preset = get_preset(model) if model in list_models() else None
    return lib_provenance(model, preset.sha256 if preset is not None else None)["provenance"]


# --- HTTP helpers --------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def multipart(image: bytes, fields: dict[str, str] | None = None) -> bytes:
    parts = b"".join(f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode()
                     for k, v in (fields or {}).items())
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()
    return parts + head + image + f"\r\n--{BOUNDARY}--\r\n".encode()


def request(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 300) -> tuple[int, dict, float]:
    """One request on a fresh connection: (status, JSON answer or {}, seconds); status 0 on a
    connection error."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"} if body is not None else {}
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        raw = response.read()
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = {"raw": raw[:200].decode("latin-1")}
        return response.status, answer, time.perf_counter() - start
    except OSError as exc:
        return 0, {"error": type(exc).__name__}, time.perf_counter() - start
    finally:
        conn.close()


def wait_until_up(port: int, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with status {server.returncode}")
        if request(port, "GET", "/healthz", timeout=2)[0] == 200:
            return
        time.sleep(0.3)
    sys.exit(f"the server did not answer /healthz within {seconds:g} s")


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (peak resident) of process ``pid``, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


def latency_summary(results: list[tuple[int, dict, float]]) -> dict:
    ok = np.array([s for code, _, s in results if code == 200]) * 1000
    codes: dict[str, int] = {}
    for code, _, _ in results:
        codes[str(code)] = codes.get(str(code), 0) + 1
    return {"requests": len(results), "failures": int(sum(code != 200 for code, _, _ in results)), "codes": codes,
            "p50_ms": round(float(np.percentile(ok, 50)), 1) if ok.size else None,
            "p95_ms": round(float(np.percentile(ok, 95)), 1) if ok.size else None,
            "max_ms": round(float(ok.max()), 1) if ok.size else None}


class PredictLoad:
    """``clients`` threads sending predictions until :meth:`stop` (or ``limit`` requests)."""

    def __init__(self, port: int, body: bytes, clients: int = 2, limit: int = 2000):
        self.port, self.body, self.limit = port, body, limit
        self.results: list[tuple[int, dict, float]] = []
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _loop(self) -> None:
        while not self.done.is_set() and len(self.results) < self.limit:
            self.results.append(request(self.port, "POST", "/api/predict", self.body, timeout=60))

    def stop(self) -> list[tuple[int, dict, float]]:
        self.done.set()
        for thread in self.threads:
            thread.join(120)
        return self.results


def in_threads(calls: list) -> list:
    """Run the zero-argument ``calls`` at once, each in a thread; their results in order."""
    results: list = [None] * len(calls)

    def run(i: int) -> None:
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def cut_off(port: int, first_bytes: bytes, limit_s: float = 60) -> dict:
    """Send ``first_bytes`` and go silent: seconds until the server closes, its status line."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(first_bytes)
    start = time.monotonic()
    sock.settimeout(limit_s)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    finally:
        sock.close()
    seconds = time.monotonic() - start
    status = received.split(b"\r\n", 1)[0].decode("latin-1") if received else "(closed without an answer)"
    detail = None
    if b"\r\n\r\n" in received:
        try:
            detail = json.loads(received.split(b"\r\n\r\n", 1)[1])["detail"]
        except (ValueError, KeyError):
            detail = received.split(b"\r\n\r\n", 1)[1][:200].decode("latin-1")
    return {"seconds": round(seconds, 2), "status_line": status, "detail": detail}


def upload_head(path: str, length: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def poll_job(port: int, job_id: str, limit_s: float) -> dict:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        code, state, _ = request(port, "GET", f"/api/jobs/{job_id}", timeout=30)
        if code != 200 or state.get("status") in ("done", "failed", "cancelled"):
            return state if code == 200 else {"status": f"http {code}"}
        time.sleep(1)
    return {"status": "still running at the benchmark's limit"}


def layer_job(port: int, body: bytes, limit_s: float) -> dict:
    start = time.perf_counter()
    code, answer, _ = request(port, "POST", "/api/explain/layers", body, timeout=60)
    if code != 202:
        return {"status": f"http {code}", "detail": answer.get("detail")}
    state = poll_job(port, answer["id"], limit_s)
    return {"status": state.get("status"), "seconds": round(time.perf_counter() - start, 1),
            "error": state.get("error")}


# --- the phases ----------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="emoadapt-ier", help="shipped model name or .safetensors (default emoadapt-ier)")
    parser.add_argument("--image", help="image to upload (default: the shipped sample chelsea.jpg)")
    parser.add_argument("--predicts", type=int, default=60, help="predictions of the idle baseline (default 60)")
    parser.add_argument("--explanations", type=int, default=20, help="explanations in all (default 20)")
    parser.add_argument("--memory-depth", type=int, default=3,
                        help="depth of the memory phase's explanations (default 3: its last round is a full batch "
                             "of 16, the most memory a batch takes, in bounded time)")
    parser.add_argument("--server-timeout", type=float, default=300,
                        help="the server's --timeout (default 300 s, so that explanations finish on a busy CPU)")
    parser.add_argument("--layer-jobs", type=int, default=4, help="layer-wise grid jobs (default 4)")
    parser.add_argument("--layer-depth", type=int, default=3, help="depth of the layer jobs (default 3)")
    parser.add_argument("--time-limit", type=float, default=1200, help="seconds for the whole run (default 1200)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "server_load.json"))
    parser.add_argument("--table", metavar="RESULTS", help="only print the markdown table of a results file")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return

    deadline = time.monotonic() + args.time_limit
    image = Path(args.image or str(resources.files("emoadapt") / "samples" / "chelsea.jpg"))
    body = multipart(image.read_bytes())
    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="emoadapt-load-")) / "server.log"
    command = [sys.executable, "-c", "import sys; from emoadapt.cli import main; sys.exit(main())", "serve",
               "--host", "127.0.0.1", "--port", str(port), "--model", args.model, "--timeout", str(args.server_timeout)]
    out: dict = {"provenance": provenance(args.model), "server_command": " ".join(command[3:]), "targets": TARGETS}
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_up(port, server)
        out["memory_mb"] = {"started": memory_mb(server.pid)}
        first = request(port, "POST", "/api/predict", body)
        warm = request(port, "POST", "/api/explain", body)
        out["warm_up"] = {"predict_status": first[0], "explain_status": warm[0], "explain_seconds": round(warm[2], 2),
                          "explain_evaluations": warm[1].get("explanation", {}).get("evaluations")}
        explanations = 1

        print("1. predictions alone", flush=True)
        load = PredictLoad(port, body)
        while len(load.results) < args.predicts and time.monotonic() < deadline:
            time.sleep(0.1)
        out["predict_alone"] = latency_summary(load.stop())

        print("2. predictions while two explanations run", flush=True)
        load = PredictLoad(port, body)
        start = time.perf_counter()
        pair = in_threads([lambda: request(port, "POST", "/api/explain", body)] * 2)
        window = time.perf_counter() - start
        out["predict_during_two_explanations"] = dict(latency_summary(load.stop()),
                                                      explain_statuses=[code for code, _, _ in pair],
                                                      explain_seconds=[round(s, 2) for _, _, s in pair],
                                                      window_seconds=round(window, 2))
        explanations += 2

        print("3. slow clients", flush=True)
        load = PredictLoad(port, body)
        half_body, half_head = in_threads([
            lambda: cut_off(port, upload_head("/api/predict", len(body)) + body[: len(body) // 2]),
            lambda: cut_off(port, b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")])
        served = latency_summary(load.stop())
        out["slow_clients"] = {"half_body": half_body, "half_head": half_head, "read_timeout_s": 10,
                               "predict_meanwhile": served}

        print("4. malformed requests", flush=True)
        code, answer, _ = request(port, "POST", "/api/predict", body[: len(body) - 40])
        garbage = cut_off(port, b"GARBAGE / NOT-HTTP\r\n\r\n", limit_s=10)
        leaver = socket.create_connection(("127.0.0.1", port))
        leaver.sendall(upload_head("/api/predict", len(body)) + body[: len(body) // 3])
        time.sleep(0.5)
        leaver.close()
        time.sleep(1)
        out["malformed"] = {"truncated_multipart": {"status": code, "detail": answer.get("detail")},
                            "not_http": garbage}

        print(f"5. memory: {args.explanations} explanations, {args.layer_jobs} layer jobs", flush=True)
        out["memory_mb"]["after_3_explanations"] = memory_mb(server.pid)
        path = f"/api/explain?depth={args.memory_depth}"
        statuses: list[int] = []
        while explanations < args.explanations and time.monotonic() < deadline:
            count = min(2, args.explanations - explanations)
            statuses += [c for c, _, _ in in_threads([lambda: request(port, "POST", path, body)] * count)]
            explanations += count
        out["memory_mb"][f"after_{explanations}_explanations"] = memory_mb(server.pid)
        layer_body = multipart(image.read_bytes(), {"depth": str(args.layer_depth)})
        jobs: list[dict] = []
        while len(jobs) < args.layer_jobs and time.monotonic() < deadline:
            count = min(2, args.layer_jobs - len(jobs))
            left = max(deadline - time.monotonic(), 1)
            jobs += in_threads([lambda: layer_job(port, layer_body, left)] * count)
        out["memory_mb"][f"after_{len(jobs)}_layer_jobs"] = memory_mb(server.pid)
        out["memory_phase"] = {"explanations": explanations, "explain_depth": args.memory_depth,
                               "explain_statuses": statuses, "layer_jobs": jobs, "layer_depth": args.layer_depth}

        print("6. shutdown with a running job and a silent client", flush=True)
        code, started_job, _ = request(port, "POST", "/api/explain/layers", layer_body)
        silent = socket.create_connection(("127.0.0.1", port))
        silent.sendall(upload_head("/api/predict", len(body)) + body[:100])
        time.sleep(2)
        start = time.monotonic()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        out["shutdown"] = {"seconds": round(time.monotonic() - start, 2), "exit_status": server.returncode,
                           "job_started": code == 202}
        silent.close()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    text = log_path.read_text(errors="replace")
    job_id = started_job.get("id", "?") if isinstance(started_job, dict) else "?"
    out["log"] = {"tracebacks": text.count("Traceback"), "error_lines": sum("ERROR" in line for line in text.splitlines()),
                  "disconnect_lines": [line for line in text.splitlines() if "disconnected mid-upload" in line],
                  "cancelled_job_lines": [line for line in text.splitlines() if job_id in line and "cancelled" in line],
                  "timeout_lines": [line for line in text.splitlines() if "408" in line and "timed out" in line or
                                    "incomplete after" in line]}
    out["checks"] = checks(out)
    write_json(Path(args.out), out)
    print(table(out))
    print(f"\nwritten: {args.out}")


def checks(out: dict) -> dict[str, bool]:
    """Each target of issue #36: met or not."""
    during = out["predict_during_two_explanations"]
    slow = out["slow_clients"]
    memory = out["memory_mb"]
    last = [v for k, v in memory.items() if k.endswith("layer_jobs")]
    return {
        "predict p95 under 300 ms while two explanations run": during["p95_ms"] is not None
        and during["p95_ms"] < TARGETS["predict_p95_ms"],
        "0 predict failures while two explanations run": during["failures"] == 0 and during["requests"] > 0,
        "slow client cut off within the read timeout (+1 s)": slow["half_body"]["seconds"] < slow["read_timeout_s"] + 1
        and slow["half_head"]["seconds"] < slow["read_timeout_s"] + 1,
        "others served meanwhile": slow["predict_meanwhile"]["failures"] == 0 and slow["predict_meanwhile"]["requests"] > 0,
        "shutdown within 10 s with a silent client": out["shutdown"]["seconds"] < TARGETS["shutdown_s"],
        "RSS after the explanations and layer jobs under 2 GB": bool(last) and last[0]["VmRSS"] < TARGETS["rss_mb"],
        "no traceback in the server log": out["log"]["tracebacks"] == 0,
    }


def table(out: dict) -> str:
    """The markdown table of docs/reliability.md from a results file."""
    p = out["provenance"]
    alone, during = out["predict_alone"], out["predict_during_two_explanations"]
    slow, bad, memory = out["slow_clients"], out["malformed"], out["memory_mb"]
    phase = out["memory_phase"]
    rows = [
        ("predictions alone (2 clients)", f"{alone['requests']} requests, {alone['failures']} failed; "
                                          f"p50 {alone['p50_ms']} ms, p95 {alone['p95_ms']} ms"),
        ("predictions while two explanations run (2 clients)",
         f"{during['requests']} requests, {during['failures']} failed; p50 {during['p50_ms']} ms, p95 "
         f"{during['p95_ms']} ms, max {during['max_ms']} ms; the explanations: {during['explain_statuses']} in "
         f"{during['explain_seconds']} s"),
        ("half a body, then silence", f"{slow['half_body']['status_line']} after {slow['half_body']['seconds']} s "
                                      f"(read timeout {slow['read_timeout_s']} s)"),
        ("half a request head, then silence", f"{slow['half_head']['status_line']} after "
                                              f"{slow['half_head']['seconds']} s"),
        ("predictions meanwhile", f"{slow['predict_meanwhile']['requests']} requests, "
                                  f"{slow['predict_meanwhile']['failures']} failed, p95 {slow['predict_meanwhile']['p95_ms']} ms"),
        ("truncated multipart body", f"{bad['truncated_multipart']['status']}: {bad['truncated_multipart']['detail']}"),
        ("a request line that is not HTTP", f"{bad['not_http']['status_line']}: {bad['not_http']['detail']}"),
        ("client leaving mid-upload", f"{len(out['log']['disconnect_lines'])} log line(s), "
                                      f"{out['log']['tracebacks']} tracebacks in the whole log"),
    ]
    for key, value in memory.items():
        rows.append((f"server memory, {key.replace('_', ' ')}", f"RSS {value['VmRSS']:,.0f} MiB (peak so far "
                                                                  f"{value['VmHWM']:,.0f} MiB)"))
    rows.append(("memory phase", f"explanations at depth {phase['explain_depth']} two at a time "
                                 f"({sum(c == 200 for c in phase['explain_statuses'])}/{len(phase['explain_statuses'])} "
                                 f"answered 200); layer jobs at depth {phase['layer_depth']}: "
                                 f"{[j.get('status') for j in phase['layer_jobs']]}"))
    rows.append(("SIGTERM with a layer job running and a silent client",
                 f"exited after {out['shutdown']['seconds']} s (status {out['shutdown']['exit_status']}); "
                 f"{len(out['log']['cancelled_job_lines'])} log line(s) reporting the job cancelled"))
    lines = [f"`{p['command']}` — {p['date']}, {p['machine']['cores']} cores (load average at start "
             f"{p['machine']['load_average_at_start']}), model {p['model']} (sha256 {str(p['weights_sha256'])[:12]}…), "
             f"commit {p['commit'][:12]}", "", "| case | measured |", "|---|---|"]
    lines += [f"| {case} | {value} |" for case, value in rows]
    lines += ["", "| target | met |", "|---|---|"]
    lines += [f"| {name} | {'yes' if ok else '**no**'} |" for name, ok in out["checks"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
