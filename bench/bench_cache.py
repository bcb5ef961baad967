"""Cache policy benchmark: hit rate and throughput of each RecordCache policy against LRU.

    .venv/bin/python bench/bench_cache.py            # N = 1e6 keys (~3 min idle, ~10 min loaded)
    .venv/bin/python bench/bench_cache.py --quick    # N = 1e5 keys (~20 s idle)

Deterministic traces (seeded) over N keys, cache sized for 10% of the data by bytes (records of
about 250 bytes, real encoded ``idnode.v1.Record`` bytes so fills pay the real TTL parse):

- ``zipf1.0`` / ``zipf0.8``: 3N requests drawn from Zipf(s) over the keys in a shuffled order.
- ``scan``: Zipf(1.0) bursts of N/2 requests, each followed by a sequential scan of N/10 keys
  taken in order from the cold (least popular) half of the key space.

Hit rate counts the last 2N requests (the first N warm the cache). Throughput figures are medians
of 7 rounds, single thread, the policies taking turns within a round: ``replay`` is requests/s
through ``get`` (+ ``fill`` on a miss), ``get_hit`` is ``get`` on keys resident in the cache,
``fill`` is fills/s of fresh keys into a full cache (evicting as it goes; includes the TTL
parse). Ratios are against LRU measured in the same run: compare ratios, not absolute figures,
across machines. Results go to bench/results/cache.json (N = 1e6), cache-quick.json (--quick) or
cache-n<N>.json (-n), unless --out says otherwise.

The TinyLFU sketch hashes Python ``hash(bytes)``, randomised per process: hit rates can move by a
few in ten thousand between runs unless PYTHONHASHSEED is fixed (this script re-executes itself
with PYTHONHASHSEED=0 for that reason).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cache.record_cache import _ENTRY_OVERHEAD, POLICIES, RecordCache
from registry import codec
from registry.model import Record, Value

RESULTS = Path(__file__).resolve().parent / "results"
BASELINE = "lru"
ROUNDS = 7


def record_pool(n: int, seed: int) -> list[bytes]:
    """``n`` distinct encoded records of about 200-300 bytes (3-5 values, TTLs of an hour or a day)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        values = [Value(index=1, type="URL", data=f"https://mes.example.com/p/SN{i:012d}", ttl=86400)]
        for j in range(2, 3 + rng.randrange(3)):
            data = "".join(
                rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789 -") for _ in range(rng.randrange(20, 45))
            )
            values.append(Value(index=j, type=f"product.field{j}", data=data, ttl=rng.choice((3600, 86400))))
        rec = Record(
            identifier=f"88.118.7/SN{i:012d}",
            values=tuple(values),
            owner="88.118.7",
            create_time_ns=1_720_000_000_000_000_000 + i,
            update_time_ns=1_720_000_000_000_000_000 + i,
            etag=f"{rng.getrandbits(64):016x}",
        )
        out.append(codec.encode_record(rec))
    return out


def zipf_ranks(n: int, s: float, count: int, rng: random.Random) -> list[int]:
    """``count`` ranks in [0, n) drawn with P(rank r) proportional to 1 / (r + 1) ** s."""
    cum = list(itertools.accumulate(1.0 / (r + 1) ** s for r in range(n)))
    return rng.choices(range(n), cum_weights=cum, k=count)


def traces(n: int, seed: int) -> dict[str, list[int]]:
    """Key ids per trace. Popularity rank r maps to key id ``order[r]`` (a fixed shuffle)."""
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    out = {
        "zipf1.0": [order[r] for r in zipf_ranks(n, 1.0, 3 * n, rng)],
        "zipf0.8": [order[r] for r in zipf_ranks(n, 0.8, 3 * n, rng)],
    }
    burst, scan = n // 2, n // 10
    zipf = zipf_ranks(n, 1.0, 3 * n, rng)
    cold = order[n // 2 :]  # the least popular half, scanned in rank order, wrapping round
    trace: list[int] = []
    zi = ci = 0
    while len(trace) < 3 * n:
        trace.extend(order[r] for r in zipf[zi : zi + burst])
        zi += burst
        trace.extend(cold[(ci + j) % len(cold)] for j in range(scan))
        ci += scan
    out["scan"] = trace[: 3 * n]
    return out


def replay(
    cache: RecordCache, keys: Sequence[bytes], values: Sequence[bytes], trace: Sequence[int], warm: int
) -> float:
    """Hit rate over ``trace[warm:]``; every miss is filled as the Registry does."""
    get, fill, epoch = cache.get, cache.fill, cache.epoch
    for i in trace[:warm]:
        k = keys[i]
        if get(k) is None:
            fill(k, values[i], epoch())
    hits = 0
    for i in trace[warm:]:
        k = keys[i]
        if get(k) is None:
            fill(k, values[i], epoch())
        else:
            hits += 1
    return hits / (len(trace) - warm)


def throughputs(
    warm: dict[str, RecordCache],
    max_bytes: int,
    keys: Sequence[bytes],
    values: Sequence[bytes],
    trace: Sequence[int],
) -> dict[str, dict[str, float]]:
    """Operations per second of each policy, median of ROUNDS rounds; within a round the policies
    take turns, so background load on the machine hits them alike. ``warm[policy]`` is a cache of
    that policy which has replayed ``trace``."""
    sample = trace[: min(len(trace), 300_000)]
    n_fill = min(len(keys), 200_000)

    def run_replay(policy: str) -> int:
        c = RecordCache(max_bytes, policy=policy)  # type: ignore[arg-type]
        get, fill, epoch = c.get, c.fill, c.epoch
        for i in sample:
            k = keys[i]
            if get(k) is None:
                fill(k, values[i], epoch())
        return len(sample)

    resident = {
        p: [keys[i] for i in dict.fromkeys(sample) if c.get(keys[i]) is not None][:100_000]
        for p, c in warm.items()
    }

    def run_get(policy: str) -> int:
        get = warm[policy].get
        for k in resident[policy]:
            get(k)
        return len(resident[policy])

    def run_fill(policy: str) -> int:
        c = RecordCache(max_bytes // 10, policy=policy)  # type: ignore[arg-type]
        fill, epoch = c.fill, c.epoch
        for i in range(n_fill):
            fill(keys[i], values[i], epoch())
        return n_fill

    rates: dict[str, dict[str, list[float]]] = {p: {"replay": [], "get_hit": [], "fill": []} for p in warm}
    for _ in range(ROUNDS):
        for measure, fn in (("replay", run_replay), ("get_hit", run_get), ("fill", run_fill)):
            for p in warm:
                t0 = time.perf_counter()
                ops = fn(p)
                rates[p][measure].append(ops / (time.perf_counter() - t0))
    return {p: {m: statistics.median(v) for m, v in r.items()} for p, r in rates.items()}


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N = 1e5 instead of 1e6")
    ap.add_argument("-n", type=int, default=0, help="number of keys (overrides --quick)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--policies", default=",".join(POLICIES), help="comma-separated, from: " + ", ".join(POLICIES)
    )
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default: see above)")
    args = ap.parse_args(argv)
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    n = args.n or (100_000 if args.quick else 1_000_000)
    if args.out is None:
        name = "cache" if n == 1_000_000 else "cache-quick" if args.quick and not args.n else f"cache-n{n}"
        args.out = RESULTS / f"{name}.json"
    policies = [p for p in args.policies.split(",") if p]
    if BASELINE not in policies:
        policies.insert(0, BASELINE)

    t0 = time.perf_counter()
    pool = record_pool(4096, args.seed)
    keys = [f"88.118.7/sn{i:012d}".encode() for i in range(n)]
    rng = random.Random(args.seed)
    values = [pool[rng.randrange(len(pool))] for _ in range(n)]
    data_bytes = sum(len(k) + len(v) + _ENTRY_OVERHEAD for k, v in zip(keys, values, strict=True))
    max_bytes = data_bytes // 10
    all_traces = traces(n, args.seed)
    print(
        f"N={n:,} keys, data {data_bytes / 2**20:.1f} MiB "
        f"(mean record {sum(map(len, pool)) / len(pool):.0f} B), "
        f"cache {max_bytes / 2**20:.1f} MiB (10%); traces of {3 * n:,} requests, hit rate over the last "
        f"{2 * n:,}; setup {time.perf_counter() - t0:.1f} s",
        flush=True,
    )

    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, trace in all_traces.items():
        warm = {p: RecordCache(max_bytes, policy=p) for p in policies}  # type: ignore[arg-type]
        hits = {p: replay(c, keys, values, trace, n) for p, c in warm.items()}
        speeds = throughputs(warm, max_bytes, keys, values, trace)
        results[name] = {p: {"hit_rate": hits[p], **speeds[p]} for p in policies}
        del warm
        base = results[name][BASELINE]
        print(f"\n{name}")
        print(
            f"  {'policy':<8} {'hit rate':>9} {'vs LRU':>8} {'replay/s':>11} {'get hit/s':>11} "
            f"{'fill/s':>10}  ratios vs LRU"
        )
        for policy, r in results[name].items():
            for m in ("hit_rate", "replay", "get_hit", "fill"):
                r[f"{m}_vs_lru"] = r[m] / base[m]
            print(
                f"  {policy:<8} {r['hit_rate']:>9.4f} {r['hit_rate'] - base['hit_rate']:>+8.4f} "
                f"{r['replay']:>11,.0f} {r['get_hit']:>11,.0f} {r['fill']:>10,.0f}  "
                f"replay {r['replay_vs_lru']:.2f}x, get {r['get_hit_vs_lru']:.2f}x, "
                f"fill {r['fill_vs_lru']:.2f}x",
                flush=True,
            )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": "python bench/bench_cache.py"
        + (" --quick" if args.quick and not args.n else f" -n {n}" if args.n else ""),
        "n_keys": n,
        "max_bytes": max_bytes,
        "data_bytes": data_bytes,
        "seed": args.seed,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "results": results,
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {args.out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
