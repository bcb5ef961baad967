"""Realistic bulk-import data: N identifiers over K enterprises, deterministic for a seed.

Identifiers look like what ERP / MES / WMS exports carry: serial numbers (``SN2407A0012345678``),
batch-qualified serials (``B240713-07/0012345678``), pallet codes, and a minority (~8%) of Chinese
product names (``螺栓M8-0012345678``). Each has 3 to 8 values (URL, product name, model, batch,
manufacturing date and site, weight, contact e-mail) of about 200 to 300 bytes encoded in all.
Identifiers are unique: each embeds a permutation of the row number, so rows come in no key order.

    python bench/gen_data.py 1000000 data.csv.zst --enterprises 20 --seed 1
    python bench/gen_data.py 1000 - --format jsonl | head

Enterprises are ``NODE.1`` .. ``NODE.K`` (node prefix 88.118 by default).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path

from registry.bulk.formats import guess_format, open_output

COLUMNS = (
    (1, "URL"),
    (2, "product.name"),
    (3, "product.model"),
    (4, "product.batch"),
    (5, "mfg.date"),
    (6, "mfg.site"),
    (7, "product.weight"),
    (8, "EMAIL"),
)
_CN_PRODUCTS = ("螺栓", "轴承", "齿轮箱", "液压阀", "传感器", "电机", "密封圈", "变频器", "减速机", "联轴器")
_EN_PRODUCTS = ("Bolt", "Bearing", "Gearbox", "Hydraulic valve", "Sensor", "Motor", "Seal ring", "Inverter")
_SITES = (
    "Suzhou plant 2",
    "Shenzhen line 7",
    "Wuhan works",
    "Qingdao DC",
    "Chengdu assembly",
    "Ningbo port WH",
)
_PERMUTE = 7919  # coprime with 10**10: i -> i * 7919 mod 10**10 is a permutation


def generate(
    n: int, enterprises: int, seed: int, node_prefix: str = "88.118"
) -> Iterator[tuple[str, list[str]]]:
    """``n`` rows of (identifier, 8 cells in COLUMNS order, "" for an absent value)."""
    rng = random.Random(seed)
    for i in range(n):
        serial = f"{(i * _PERMUTE) % 10**10:010d}"
        ent = f"{node_prefix}.{rng.randrange(enterprises) + 1}"
        kind = rng.random()
        year, month, day = 2020 + rng.randrange(6), 1 + rng.randrange(12), 1 + rng.randrange(28)
        batch = f"B{year % 100:02d}{month:02d}{day:02d}-{rng.randrange(100):02d}"
        if kind < 0.08:
            product = rng.choice(_CN_PRODUCTS)
            suffix = f"{product}M{rng.randrange(4, 30)}-{serial}"
            name = f"{product} M{rng.randrange(4, 30)} 国标 {rng.choice(('镀锌', '不锈钢', '碳钢'))}"
        else:
            product = rng.choice(_EN_PRODUCTS)
            name = f"{product} {rng.choice(('M8', 'M10', '6204-2RS', 'DN50', 'IP67', '3kW'))}"
            if kind < 0.55:
                suffix = f"SN{year % 100:02d}{month:02d}{chr(65 + rng.randrange(26))}{serial}"
            elif kind < 0.85:
                suffix = f"{batch}/{serial}"
            else:
                suffix = f"PLT.{rng.randrange(10**6):06d}.{serial}"
        cells = [
            f"https://trace.example.com/{ent}/{suffix}",
            name,
            f"{product[:3].upper()}-{rng.randrange(10**5):05d}-R{rng.randrange(10)}",
            batch,
            f"{year}-{month:02d}-{day:02d}",
            rng.choice(_SITES),
            f"{rng.randrange(1, 50000) / 100:.2f} kg",
            f"qa{rng.randrange(100)}@ent{ent.rsplit('.', 1)[1]}.example.com",
        ]
        keep = 3 + rng.randrange(6)  # 3..8 values: the first three always, then a random subset
        optional = list(range(3, 8))
        rng.shuffle(optional)
        for j in optional[keep - 3 :]:
            cells[j] = ""
        yield f"{ent}/{suffix}", cells


def write(path: str, n: int, enterprises: int, seed: int, fmt: str | None = None) -> None:
    """Write ``n`` generated rows to ``path`` (``-``: stdout; .gz/.zst compress) as CSV or JSONL."""
    if fmt is None:
        try:
            fmt = guess_format(path).value
        except ValueError:  # stdout or an unknown extension
            fmt = "csv"
    out = open_output(path)
    try:
        buf: list[str] = []
        if fmt == "csv":
            import io

            sink = io.StringIO()
            writer = csv.writer(sink, lineterminator="\n")
            writer.writerow(["identifier", *(f"{i}:{t}" for i, t in COLUMNS)])
            for ident, cells in generate(n, enterprises, seed):
                writer.writerow([ident, *cells])
                if sink.tell() > 1 << 20:
                    out.write(sink.getvalue().encode())
                    sink.seek(0)
                    sink.truncate()
            out.write(sink.getvalue().encode())
        else:
            for ident, cells in generate(n, enterprises, seed):
                values = [
                    {"index": i, "type": t, "data": c, "ttl": 86400}
                    for (i, t), c in zip(COLUMNS, cells, strict=True)
                    if c
                ]
                buf.append(json.dumps({"identifier": ident, "values": values}, ensure_ascii=False))
                if len(buf) >= 10_000:
                    out.write(("\n".join(buf) + "\n").encode())
                    buf.clear()
            if buf:
                out.write(("\n".join(buf) + "\n").encode())
    finally:
        if path != "-":
            out.close()
        else:
            out.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rows", type=int)
    parser.add_argument("path", help="output file (.csv/.jsonl, optionally .gz/.zst) or - for stdout")
    parser.add_argument("--enterprises", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--format", choices=("csv", "jsonl"))
    args = parser.parse_args(argv)
    write(args.path, args.rows, args.enterprises, args.seed, args.format)
    if args.path != "-":
        print(
            f"wrote {args.rows} rows to {args.path} ({Path(args.path).stat().st_size} bytes)", file=sys.stderr
        )


if __name__ == "__main__":
    main()
