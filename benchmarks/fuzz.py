"""Fuzz medrecon's readers: truncations at every byte, then random mutations, for a fixed time per reader.

Usage::

    python benchmarks/fuzz.py --reader all --minutes 1 --out fuzz-results
    python benchmarks/fuzz.py --reader dicom-j2k --minutes 5 --seed 7

Each reader's seed is a tiny valid file from ``medrecon.testing.samples``. A worker process runs examples
(first every truncation point of the seed, then random mutations: bit flips, boundary integers,
random chunks, splices, random bytes behind the magic, hostile numbers in text headers) through
``medrecon.testing.fuzzing.exercise`` with a small memory cap (``MEDRECON_MAX_GB=0.25``) and a per-example
time limit. An example passes when the reader returns a valid result or raises ``MedreconError``.
Anything else is a *finding*, saved with its input under ``OUT/findings/<reader>/``:

- ``bug``: another exception type, or an accepted file with an invalid result;
- ``hang``: the example ran past ``--example-seconds`` (Python-level, via SIGALRM);
- ``crash``/``stall``: the worker died (segfault in a C library) or stopped reporting progress for
  ``--stall-seconds`` (a C-level hang); the parent kills it, records the example, and restarts after it.

Workers run one at a time (the machine is shared); ``OUT/summary.json`` holds the counts. Exit status
is 1 when anything was found.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The message of medrecon.io.guards.reader_errors' generic branch: a parser raised an exception type the
# reader has no explicit check for. Clean (one line, an InputError), but worth a look: counted separately.
NET = re.compile(r"\((\w+)\); the .* file is damaged, truncated or not a valid file")
sys.path.insert(0, str(REPO))


# ----------------------------------------------------------------------------- worker


def _coarse_to_fine(points: list) -> list:
    """``points`` reordered so that any prefix covers the whole range evenly (strides 2^k, ..., 2, 1).

    A run that ends before all truncations are done has then still cut the file everywhere, coarsely.
    """
    order, seen = [], set()
    stride = 1 << max(0, len(points).bit_length() - 1)
    while stride >= 1:
        for i in range(0, len(points), stride):
            if i not in seen:
                seen.add(i)
                order.append(points[i])
        stride //= 2
    return order


def _example(seed_path: Path, files: list[Path], n: int, n_trunc: list[tuple[int, int]], rng_seed: int):
    """``(description, {file name: bytes})`` for example ``n``.

    Even examples walk the truncation points (coarse to fine) until all are done; odd ones, and all
    after that, are random mutations seeded by ``(rng_seed, n)`` so any finding can be replayed.
    """
    from medrecon.testing.fuzzing import mutate

    originals = {f.name: f.read_bytes() for f in files}
    if n % 2 == 0 and n // 2 < len(n_trunc):
        fi, cut = n_trunc[n // 2]
        name = files[fi].name
        return f"truncate {name} at {cut}", {**originals, name: originals[name][:cut]}
    rng = random.Random(rng_seed * 1_000_003 + n)
    name = rng.choice(sorted(originals))
    data = originals[name]
    steps = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):  # mostly single mutations, sometimes stacked
        what, data = mutate(data, rng)
        steps.append(what)
    return f"{'+'.join(steps)} of {name} (rng {rng_seed}/{n})", {**originals, name: data}


def run_worker(args: argparse.Namespace) -> int:
    """Run examples of one reader from ``args.start`` until ``args.seconds`` have passed."""
    import torch

    torch.set_num_threads(1)
    from medrecon.errors import MedreconError
    from medrecon.testing.fuzzing import Hang, exercise, fuzz_environment, make_seed, seed_files, time_limit
    from medrecon.testing.samples import SEEDS

    out = Path(args.out)
    kind = SEEDS[args.reader][1]
    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{args.reader}-"))
    seed = make_seed(args.reader, work / "seed")
    files = seed_files(seed)
    trunc = _coarse_to_fine([(i, cut) for i, f in enumerate(files) for cut in range(f.stat().st_size)])
    progress = out / f"progress-{args.reader}.txt"
    counts = {"ok": 0, "refused": 0, "bug": 0, "hang": 0}
    messages: set[str] = set()
    net: dict[str, int] = {}  # refusals by the generic safety net, by the exception type it caught
    slowest = 0.0
    deadline = time.monotonic() + args.seconds
    n = args.start
    with fuzz_environment(0.25, read_timeout=0 if args.in_process else args.read_timeout):
        while time.monotonic() < deadline:
            desc, contents = _example(seed, files, n, trunc, args.seed)
            case = work / "case"
            case.mkdir(exist_ok=True)
            for name, data in contents.items():
                (case / name).write_bytes(data)
            progress.write_text(f"{n}\t{desc}\n")  # the parent's watchdog reads this
            t0 = time.perf_counter()
            outcome, detail = "ok", ""
            try:
                with time_limit(args.example_seconds):
                    exercise(case / seed.name, kind)
            except MedreconError as exc:
                outcome = "refused"
                messages.add(str(exc).split(":")[-1][:60])
                caught = NET.search(str(exc))
                if caught:
                    net[caught.group(1)] = net.get(caught.group(1), 0) + 1
            except Hang as exc:
                outcome, detail = "hang", str(exc)
            except Exception as exc:  # noqa: BLE001 - this is what the fuzzer looks for
                outcome, detail = "bug", "".join(traceback.format_exception(exc)[-3:])
            slowest = max(slowest, time.perf_counter() - t0)
            counts[outcome] += 1
            if outcome in ("bug", "hang"):
                _save_finding(out, args.reader, n, desc, outcome, detail, case)
            n += 1
    (out / f"worker-{args.reader}-{args.start}.json").write_text(json.dumps(
        {"reader": args.reader, "start": args.start, "end": n, "counts": counts, "truncations": len(trunc),
         "distinct_refusals": len(messages), "slowest_s": round(slowest, 3), "net": net}))
    return 0


def _save_finding(out: Path, reader: str, n: int, desc: str, outcome: str, detail: str, case: Path) -> None:
    import shutil

    dest = out / "findings" / reader / f"{n:07d}-{outcome}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if case.exists():
        shutil.copytree(case, dest, dirs_exist_ok=True)
    with open(out / "findings.jsonl", "a") as fh:
        fh.write(json.dumps({"reader": reader, "example": n, "what": desc, "outcome": outcome,
                             "detail": detail[-2000:], "saved": str(dest.relative_to(out))}) + "\n")


# ----------------------------------------------------------------------------- parent


def _run_reader(reader: str, seconds: float, args: argparse.Namespace, out: Path) -> dict:
    """Run workers for ``reader`` until ``seconds`` are used, restarting after crashes and stalls."""
    t_end = time.monotonic() + seconds
    start = 0
    parts: list[dict] = []
    dead = 0
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    progress = out / f"progress-{reader}.txt"
    while (left := t_end - time.monotonic()) > 2:
        progress.unlink(missing_ok=True)
        cmd = [sys.executable, __file__, "--worker", "--reader", reader, "--seconds", f"{left:.1f}",
               "--start", str(start), "--seed", str(args.seed), "--out", str(out),
               "--example-seconds", str(args.example_seconds), "--read-timeout", str(args.read_timeout)]
        if args.in_process:
            cmd.append("--in-process")
        proc = subprocess.Popen(cmd, env=env)
        last, last_change = None, time.monotonic()
        while proc.poll() is None:
            time.sleep(0.5)
            text = progress.read_text() if progress.exists() else None
            if text != last:
                last, last_change = text, time.monotonic()
            elif time.monotonic() - last_change > args.stall_seconds:
                proc.kill()
                proc.wait()
                break
        if proc.returncode == 0:
            parts.append(json.loads((out / f"worker-{reader}-{start}.json").read_text()))
            break
        # The worker died or stalled: record the example it was on and continue after it.
        n, _, desc = (last or "0\tstartup").strip().partition("\t")
        outcome = "stall" if proc.returncode in (-9, 137) else "crash"
        dead += 1
        _save_finding(out, reader, int(n), desc, outcome, f"worker exit status {proc.returncode}",
                      Path(tempfile.gettempdir()) / "nonexistent")
        start = int(n) + 1
        if dead > 20:
            break
    counts = {"ok": 0, "refused": 0, "bug": 0, "hang": 0}
    net: dict[str, int] = {}
    for p in parts:
        for k, v in p["counts"].items():
            counts[k] += v
        for k, v in p.get("net", {}).items():
            net[k] = net.get(k, 0) + v
    return {"reader": reader, "seconds": round(seconds), "examples": sum(counts.values()) + dead,
            "truncation_points": parts[0]["truncations"] if parts else None, **counts, "crash_or_stall": dead,
            "slowest_example_s": max((p["slowest_s"] for p in parts), default=None), "refused_by_net": net}


def main(argv: list[str] | None = None) -> int:
    from medrecon.testing.samples import SEEDS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reader", default="all", help=f"all, or a comma list of: {', '.join(SEEDS)}")
    p.add_argument("--minutes", type=float, default=1.0, help="fuzzing time per reader")
    p.add_argument("--seed", type=int, default=0, help="random seed of the mutations")
    p.add_argument("--out", default=None, help="results folder (default: a new temporary folder)")
    p.add_argument("--example-seconds", type=float, default=10.0, help="per-example time limit")
    p.add_argument("--stall-seconds", type=float, default=60.0, help="kill a worker silent for this long")
    p.add_argument("--read-timeout", type=float, default=5.0,
                   help="MEDRECON_READ_TIMEOUT for the isolated parser (seconds)")
    p.add_argument("--in-process", action="store_true",
                   help="parse in-process (MEDRECON_READ_TIMEOUT=0): ~10x more examples, but a C-level hang "
                        "then shows as a stall instead of the clean refusal users get")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return run_worker(args)
    readers = list(SEEDS) if args.reader == "all" else args.reader.split(",")
    unknown = [r for r in readers if r not in SEEDS]
    if unknown:
        p.error(f"unknown reader(s) {unknown}; choose from {', '.join(SEEDS)}")
    out = Path(args.out or tempfile.mkdtemp(prefix="medrecon-fuzz-"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for reader in readers:
        row = _run_reader(reader, args.minutes * 60, args, out)
        rows.append(row)
        print(f"{reader:<10} {row['examples']:>7} examples ({row['truncation_points']} truncations): "
              f"{row['ok']} accepted, {row['refused']} refused cleanly, {row['bug']} bugs, {row['hang']} hangs, "
              f"{row['crash_or_stall']} crashes/stalls; slowest {row['slowest_example_s']} s; "
              f"refused by the generic net: {row['refused_by_net'] or 'none'}", flush=True)
    summary = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "readers": rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    found = sum(r["bug"] + r["hang"] + r["crash_or_stall"] for r in rows)
    print(f"{'no findings' if not found else f'{found} findings in ' + str(out / 'findings.jsonl')}; "
          f"summary in {out / 'summary.json'}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
