"""Engine benchmark: whole-process timings of `python -m ade_engine` (printed, never asserted).

    python3 engine/bench.py [--runs 10] [--python PATH]

Builds a venv as the worker does (uv, engine wheel + starter configuration,
bytecode compiled) unless --python names one, generates the inputs, and
prints the median and minimum wall time and the peak memory of each case:
--version, a 10-row CSV, a 100,000-row CSV, the sample workbook, and a
100,000-row workbook.
"""

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ENGINE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(ENGINE, "src", "ade_engine", "templates", "config")


def build_venv(scratch: str) -> str:
    venv = os.path.join(scratch, "venv")
    wheels = os.path.join(scratch, "wheels")
    subprocess.run(["uv", "build", "--wheel", "-q", "--out-dir", wheels, ENGINE], check=True)
    subprocess.run(["uv", "venv", "-q", "--relocatable", "--python", "python3", venv], check=True)
    wheel = os.path.join(wheels, os.listdir(wheels)[0])
    subprocess.run(["uv", "pip", "install", "-q", "--compile-bytecode", "--python",
                    os.path.join(venv, "bin", "python"), wheel, TEMPLATE], check=True)
    return os.path.join(venv, "bin", "python")


def make_inputs(scratch: str) -> dict:
    random.seed(1)
    first = ["Ada", "Grace", "Alan", "Katherine", "Edsger", "Barbara", "Donald", "Margaret"]
    last = ["Lovelace", "Hopper", "Turing", "Johnson", "Dijkstra", "Liskov", "Knuth", "Hamilton"]

    def roster(path: str, rows: int) -> str:
        with open(path, "w") as out:
            out.write("Club roster\n\nMember #,First Name,SURNAME,E-mail Address,Phone,Date Joined,Notes\n")
            for i in range(rows):
                f, l = random.choice(first), random.choice(last)
                out.write(f"{100000 + i},{f},{l},{f.lower()}.{l.lower()}{i}@example.org,555-{i % 10000:04d},"
                          f"20{random.randint(10, 23)}-{random.randint(1, 12):02d}-{random.randint(1, 28):02d},"
                          f"{'note' if i % 7 == 0 else ''}\n")
        return path

    return {"small": roster(os.path.join(scratch, "small.csv"), 10),
            "big": roster(os.path.join(scratch, "big.csv"), 100_000),
            "sample_xlsx": os.path.join(ENGINE, "samples", "members-with-notes.xlsx")}


def timed(cmd: list[str], env: dict, fresh: str | None) -> tuple[float, int]:
    if fresh:
        # The worker gives each attempt an empty output directory; renaming over
        # existing files would also make ext4 flush them, which is not the engine's cost.
        shutil.rmtree(fresh, ignore_errors=True)
    started = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return elapsed, usage.ru_maxrss // 1024


def report(name: str, cmd: list[str], runs: int, env: dict, fresh: str | None = None) -> None:
    timed(cmd, env, fresh)  # warm-up
    samples = [timed(cmd, env, fresh) for _ in range(runs)]
    walls = [s[0] * 1000 for s in samples]
    print(f"{name:<28} median {statistics.median(walls):8.1f} ms   min {min(walls):8.1f} ms   "
          f"peak {max(s[1] for s in samples):5d} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--python", help="a venv python with ade_engine and ade_config installed")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="ade-engine-bench-")
    try:
        python = args.python or build_venv(scratch)
        inputs = make_inputs(scratch)
        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        out = os.path.join(scratch, "out")
        run = [python, "-m", "ade_engine", "run", "--output-dir", out, "--input"]
        report("python -c pass", [python, "-c", "pass"], args.runs, env)
        report("--version", [python, "-m", "ade_engine", "--version"], args.runs, env)
        report("10-row CSV", run + [inputs["small"]], args.runs, env, out)
        report("sample XLSX (2 sheets)", run + [inputs["sample_xlsx"]], args.runs, env, out)
        heavy = max(1, args.runs // 3)
        report("100,000-row CSV", run + [inputs["big"]], heavy, env, out)
        subprocess.run(run + [inputs["big"]], env=env, check=True, stdout=subprocess.DEVNULL)
        big_xlsx = os.path.join(scratch, "big.xlsx")
        shutil.copy(os.path.join(out, "big.normalized.xlsx"), big_xlsx)
        report("100,000-row XLSX", run + [big_xlsx], heavy, env, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
