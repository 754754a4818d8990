"""The HTTP service under load: `POST /verify` and `GET /matches/byBinding` with concurrent clients on loopback,
against the same calls made in-process (the floor: what the service adds is HTTP, auth and the thread pool).

A real server process (`provenance api`) on a fresh home publishes one small video through every gate; then
CLIENTS concurrent clients send REQUESTS requests of each kind (bounded in count and time), and the same number
of calls run in this process, one after another. Reported: requests per second and p50/p99 latency.

    python -m bench.bench_api [--clients 32] [--requests 320]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.api.support import cli, running_server, until

PASSWORD = "benchmark password 1"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(clients: int, requests: int, call: Callable[[], Awaitable[int]]) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(requests):
        queue.put_nowait(n)

    async def worker() -> None:
        while not queue.empty():
            queue.get_nowait()
            started = time.perf_counter()
            status = await call()
            assert status == 200, status
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(clients))), timeout=300)
    return requests / (time.perf_counter() - started), latencies


def in_process(requests: int, call: Callable[[], object]) -> tuple[float, list[float]]:
    latencies = []
    started = time.perf_counter()
    for _ in range(requests):
        t = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - t)
    return requests / (time.perf_counter() - started), latencies


def report(name: str, served: tuple[float, list[float]], local: tuple[float, list[float]]) -> None:
    (rps, lat), (local_rps, local_lat) = served, local
    print(
        f"{name}: HTTP {rps:,.0f} req/s, p50 {statistics.median(lat) * 1e3:.1f} ms, p99 "
        f"{percentile(lat, 0.99) * 1e3:.1f} ms | in-process {local_rps:,.0f} calls/s, p50 "
        f"{statistics.median(local_lat) * 1e3:.1f} ms | ratio {rps / local_rps:.2f}"
    )


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=320)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        cli(home, "pki", "init")
        password_file = Path(tmp) / "password"
        password_file.write_text(PASSWORD)
        cli(home, "admin", "init", "bench", "--password-file", str(password_file))
        # The benchmark measures the service, not its rate limit.
        with running_server(home, api_rate="100000") as client:
            base = str(client.base_url)
            token = client.post("/auth/sign-in", json={"handle": "bench", "password": PASSWORD}).json()
            auth = {"Authorization": f"Bearer {token['access_token']}"}
            small = {"duration_s": 1, "fps": 8, "width": 144, "height": 256}
            video = client.post("/videos", json={"prompt": "a red ball", **small}, headers=auth).json()["video_id"]
            until(
                lambda: client.get(f"/videos/{video}", headers=auth).json()["state"] in ("published", "blocked"),
                "the video to pass its gates",
            )
            signed = client.get(f"/videos/{video}/file", headers=auth).content
            binding = client.post("/verify", content=signed, headers={**auth, "Content-Type": "video/mp4"}).json()[
                "soft_binding"
            ]
            print(f"{args.clients} clients, {args.requests} requests each kind; a {len(signed):,}-byte signed clip")

            async def run() -> tuple[tuple[float, list[float]], tuple[float, list[float]]]:
                limits = httpx.Limits(max_connections=args.clients)
                async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits, headers=auth) as http:

                    async def verify() -> int:
                        response = await http.post("/verify", content=signed, headers={"Content-Type": "video/mp4"})
                        return response.status_code

                    async def by_binding() -> int:
                        return (await http.get("/matches/byBinding", params=binding)).status_code

                    return await load(args.clients, args.requests, verify), await load(
                        args.clients, args.requests, by_binding
                    )

            served_verify, served_binding = asyncio.run(run())

        from provenance.bootstrap import System
        from provenance.config import Settings
        from provenance.credentials.resolution import ManifestResolver
        from provenance.credentials.verify import verify_file
        from provenance.verification import ReadModelManifestIndex, ReadModelStatus

        system = System(Settings(home=home))
        file = Path(tmp) / "clip.mp4"
        file.write_bytes(signed)
        trust = system.trust()
        system.catch_up()
        status = ReadModelStatus(system.reads)
        resolver = ManifestResolver(ReadModelManifestIndex(system.reads), system.blobs, trust)
        local_verify = in_process(args.requests, lambda: verify_file(file, trust, status).to_json())
        local_binding = in_process(args.requests, lambda: resolver.matches_by_binding(binding["alg"], binding["value"]))
        system.close()
    report("POST /verify", served_verify, local_verify)
    report("GET /matches/byBinding", served_binding, local_binding)


if __name__ == "__main__":
    main()
