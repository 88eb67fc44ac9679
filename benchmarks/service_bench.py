"""Latency and throughput of the CDS Hooks service, as an EHR would see it:
``python benchmarks/service_bench.py [--duration 60] [--rate 50] [--workers 1 2]``.

A real ``ivig-safety serve`` on 127.0.0.1 with auth on (an ES384 client key, a fresh token per call, so every call
pays for signature verification and the replay check in the audit database), answering ``order-sign`` for the
dermatomyositis order (examples/fhir/dermatomyositis-bundle.json as draft order plus prefetch).

Two measurements per worker count:
- steady load: ``--rate`` requests/s, open loop (each call is sent at its scheduled time whether or not earlier ones
  have returned, and its latency counts from that time, so a stalled server cannot hide its queue), for
  ``--duration`` seconds: p50, p95, p99 and max;
- the highest rate at which p99 stays under ``--p99-limit`` ms: rates stepped up (``--step-seconds`` each) until
  p99 goes over, or a call fails.

The load generator runs on the same 2 cores as the server (asyncio streams on keep-alive connections, requests and
tokens prepared before the run, so that it takes as little CPU from the server as it can). Use
``--profile`` to run the server in one worker under cProfile and print where its time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "examples" / "fhir" / "dermatomyositis-bundle.json"
ISSUER = "https://bench-ehr.example/"
PATH = "/cds-services/ivig-order-sign"


def request_body() -> bytes:
    resources = [e["resource"] for e in json.loads(BUNDLE.read_text())["entry"]]
    of = lambda kind: [r for r in resources if r["resourceType"] == kind]  # noqa: E731
    codes = lambda r: {c["code"] for c in r["code"]["coding"]}  # noqa: E731
    searchset = lambda rs: {"resourceType": "Bundle", "type": "searchset",  # noqa: E731
                            "entry": [{"resource": r} for r in rs]}
    order = of("MedicationRequest")[0]
    body = {"hook": "order-sign", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": "dm-patient",
                        "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                        "entry": [{"resource": order}]}},
            "prefetch": {"patient": of("Patient")[0],
                         "weight": searchset([o for o in of("Observation") if codes(o) & {"29463-7", "3141-9"}]),
                         "height": searchset([o for o in of("Observation") if "8302-2" in codes(o)]),
                         "conditions": searchset(of("Condition")), "renal": None, "medicationRequests": None,
                         "medicationStatements": None}}
    return json.dumps(body).encode()


class Client:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP384R1())
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**public, "kid": "bench", "use": "sig", "alg": "ES384"}]}

    def tokens(self, aud: str, n: int) -> list[str]:
        now = int(time.time())
        return [jwt.encode({"iss": ISSUER, "aud": aud, "iat": now, "exp": now + 900, "jti": str(uuid.uuid4())},
                           self.key, algorithm="ES384", headers={"kid": "bench", "typ": "JWT"}) for _ in range(n)]


def start(folder: Path, client: Client, workers: int, profile: bool, extra: list[str]) -> tuple[subprocess.Popen,
                                                                                            str]:
    jwks = folder / "jwks.json"
    jwks.write_text(json.dumps(client.jwks))
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "ivig_safety.cli", "serve", "--port", str(port), "--workers", str(workers),
               "--trust", f"{ISSUER}={jwks}", "--audit", f"sqlite:///{folder / f'audit-{port}.db'}", *extra]
    if profile:
        command = [sys.executable, "-m", "cProfile", "-o", str(folder / "serve.prof"), "-m", "ivig_safety.cli",
                   *command[3:]]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(folder / "serve.log", "wb"))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the server did not start:\n{(folder / 'serve.log').read_text()}")


class _Connections:
    """Keep-alive HTTP/1.1 connections to the server, one request at a time each, opened as needed. A minimal
    client (requests written as prepared bytes, answers read by Content-Length): httpx costs about a millisecond of
    CPU a call, which on a 2-core machine is taken from the server being measured."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def call(self, request: bytes, fresh: bool = False) -> int:
        reused = bool(self.idle) and not fresh
        connection = self.idle.pop() if reused else await asyncio.open_connection(self.host, self.port)
        reader, writer = connection
        writer.write(request)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
            if not reused or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                raise
            writer.close()  # the server closed this idle connection (keep-alive timeout): as any client, reconnect
            return await self.call(request, fresh=True)
        status = int(head.split(b" ", 2)[1])
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        body = await reader.readexactly(length)
        self.idle.append(connection)
        return status if b'"cards":[{' in body or status != 200 else 0  # 0: an answer without cards

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def load(base: str, body: bytes, tokens: list[str], rate: float, seconds: float) -> tuple[list[float], int]:
    """Open loop: call i is sent at start + i/rate; its latency counts from then. Returns latencies (ms), failures."""
    n = int(rate * seconds)
    host, port = base.removeprefix("http://").split(":")
    requests = [(f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                 f"Authorization: Bearer {tokens[i]}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
                for i in range(n)]
    latencies: list[float] = []
    failures = 0
    reasons: dict[str, int] = {}
    connections = _Connections(host, int(port))
    started = time.perf_counter()

    async def one(i: int) -> None:
        nonlocal failures
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            status = await asyncio.wait_for(connections.call(requests[i]), 30)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, StopIteration) as exc:
            status = type(exc).__name__
        if status == 200:
            latencies.append((time.perf_counter() - due) * 1000)
        else:
            failures += 1
            reasons[str(status)] = reasons.get(str(status), 0) + 1

    await asyncio.gather(*(one(i) for i in range(n)))
    connections.close()
    if reasons:
        print(f"    failures: {reasons}", flush=True)
    return latencies, failures


def percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 2), "p95": round(cuts[94], 2), "p99": round(cuts[98], 2),
            "max": round(max(values), 2)}


def run(base: str, body: bytes, client: Client, rate: float, seconds: float) -> dict[str, Any]:
    tokens = client.tokens(base + PATH, int(rate * seconds) + 1)
    latencies, failures = asyncio.run(load(base, body, tokens, rate, seconds))
    return {"rate": rate, "seconds": seconds, "calls": len(latencies) + failures, "failures": failures,
            **percentiles(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60, help="seconds of steady load (default 60)")
    parser.add_argument("--rate", type=float, default=50, help="steady requests/s (default 50)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument("--p99-limit", type=float, default=100, help="ms, for the highest rate (default 100)")
    parser.add_argument("--step-seconds", type=float, default=10, help="seconds per rate step (default 10)")
    parser.add_argument("--rates", type=float, nargs="+", default=[50, 100, 150, 200, 250, 300, 400, 500, 600],
                        help="rates tried for the highest throughput")
    parser.add_argument("--profile", action="store_true", help="one worker under cProfile; print its top functions")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra argument for serve (repeatable)")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    body = request_body()
    client = Client()
    results: dict[str, Any] = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "workers": {}}
    with tempfile.TemporaryDirectory() as folder:
        for workers in ([1] if args.profile else args.workers):
            process, base = start(Path(folder), client, workers, args.profile, args.serve_arg)
            try:
                run(base, body, client, 20, 2)  # warm up: connections, first checks
                steady = run(base, body, client, args.rate, args.duration)
                print(f"{workers} worker(s), {args.rate:g} req/s for {args.duration:g} s: p50 {steady['p50']} ms, "
                      f"p95 {steady['p95']} ms, p99 {steady['p99']} ms, max {steady['max']} ms, "
                      f"{steady['failures']} failed of {steady['calls']}", flush=True)
                best = None
                for rate in ([] if args.profile else args.rates):
                    step = run(base, body, client, rate, args.step_seconds)
                    passed = step["failures"] == 0 and step["p99"] < args.p99_limit
                    print(f"  {rate:g} req/s: p99 {step['p99']} ms, {step['failures']} failed"
                          f"{'' if passed else '  <- over'}", flush=True)
                    if not passed:
                        break
                    best = step
                results["workers"][workers] = {"steady": steady, "highest_rate_p99_under_limit": best}
                if best:
                    print(f"  highest rate with p99 < {args.p99_limit:g} ms: {best['rate']:g} req/s", flush=True)
            finally:
                process.terminate()
                process.wait(30)
        if args.profile:
            import pstats

            stats = pstats.Stats(str(Path(folder) / "serve.prof"))
            stats.sort_stats("cumulative").print_stats(40)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
