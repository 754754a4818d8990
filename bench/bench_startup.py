"""Read commands at the command line: `feed`, `trace` and `verify` of a small signed file, as whole processes,
against the same call made in this process once everything is imported (the floor: the work itself).

The project's modules are byte-compiled first, as an install leaves them. A fresh embedded home (SQLite) gets a
development PKI and one small video taken through every gate. Each command then runs RUNS times as the installed
`provenance` script (wall clock, median) and RUNS times in-process through `provenance.cli.main`. Reported: both
medians, the ratio, and what the process imports, timed on its own (`python -X importtime` of the same command,
the packages whose modules took longest).

    python -m bench.bench_startup [--runs 7]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance.cli import main


def command_line() -> list[str]:
    """How a user runs it: the installed `provenance` script beside this interpreter, else the module."""
    script = Path(sys.executable).with_name("provenance")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "provenance.cli"]


def whole_process(argv: list[str], env: dict[str, str], runs: int) -> float:
    """Median wall seconds of the command as a new process (one warm-up run first)."""
    times = []
    for index in range(runs + 1):
        started = time.perf_counter()
        subprocess.run([*command_line(), *argv], env=env, capture_output=True, check=False)
        if index:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def in_process(argv: list[str], runs: int) -> float:
    """Median wall seconds of the same call in this process (imports done by a warm-up call)."""
    times = []
    for index in range(runs + 1):
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            main(argv)
        if index:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def heaviest_imports(argv: list[str], env: dict[str, str], count: int = 6) -> list[tuple[str, float]]:
    """The packages whose modules took longest to import in one run of the command (their own time, ms)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "provenance.cli", *argv], env=env, capture_output=True, text=True
    )
    found: dict[str, float] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s+(\S+)$", line)
        if match:
            name = match.group(2).split(".")[0]
            found[name] = found.get(name, 0.0) + int(match.group(1)) / 1000
    return sorted(found.items(), key=lambda item: -item[1])[:count]


def prepare(home: Path) -> Path:
    """A home with a development PKI and one small published video; returns the signed file."""
    os.environ["PROVENANCE_HOME"] = str(home)
    quiet = contextlib.redirect_stdout(io.StringIO())
    with quiet, contextlib.redirect_stderr(io.StringIO()):
        assert main(["pki", "init"]) == 0
        assert main(["person", "alice"]) == 0
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["generate", "--prompt", "a red ball", "--size", "160x288", "--duration", "1", "--as", "alice"])
    assert code == 0, "the benchmark video was not published"
    return Path(out.getvalue().strip().splitlines()[-1])


PACKAGES = ("kernel", "schemas", "projections", "provenance")


def compile_project() -> None:
    """Byte-compile the project's modules, as any install does: otherwise (PYTHONDONTWRITEBYTECODE set, as on
    some machines) every start compiles them from source, which is not what a user's command pays."""
    import compileall

    root = Path(__file__).resolve().parent.parent
    for package in PACKAGES:
        compileall.compile_dir(root / package, quiet=1)


def run(runs: int) -> None:
    compile_project()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        signed = prepare(Path(tmp) / "home")
        env = {**os.environ, "PROVENANCE_HOME": str(Path(tmp) / "home")}
        trace = ["trace", signed.stem]
        commands = {"feed": ["feed"], "trace": trace, "verify": ["verify", str(signed)]}
        print(f"small file: {signed.stat().st_size / 1000:.0f} kB; {runs} runs each, medians")
        print(f"{'command':8} {'whole process':>14} {'in-process':>11} {'ratio':>7}  heaviest imports, own time (ms)")
        for name, argv in commands.items():
            process, floor = whole_process(argv, env, runs), in_process(argv, runs)
            imports = ", ".join(f"{package} {ms:.0f}" for package, ms in heaviest_imports(argv, env))
            print(f"{name:8} {process * 1000:11.0f} ms {floor * 1000:8.1f} ms {process / floor:6.1f}x  {imports}")
        bare = whole_process(["--help"], env, runs)
        interpreter = statistics.median(_timed([sys.executable, "-c", "pass"], env) for _ in range(runs))
        print(f"`provenance --help`: {bare * 1000:.0f} ms; a bare interpreter: {interpreter * 1000:.0f} ms")


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, capture_output=True, check=False)
    return time.perf_counter() - started


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    run(parser.parse_args().runs)
