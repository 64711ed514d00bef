"""Merge one GPU call's records into benchmarks/results/ and regenerate BENCHMARKS.md's tables.

    python benchmarks/gpu/collect.py OUT_DIR      # OUT_DIR: where the call's records.jsonl came back

The records are copied unchanged to ``benchmarks/results/gpu-<date>-<device>.jsonl`` (a new file
per call; an existing one is never overwritten), then ``benchmarks/tables.py`` rebuilds every
table, the GPU ones included. Smoke records (``run.sh --smoke``) are refused unless
``--allow-smoke``, so that CPU rehearsals never pass for GPU figures.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import tables  # noqa: E402


def collect(out_dir: Path, results: Path, markdown: Path, allow_smoke: bool = False) -> Path:
    """Copy the call's records into ``results`` and rebuild ``markdown``; return the new file."""
    source = out_dir / "records.jsonl"
    if not source.is_file():
        raise SystemExit(f"error: {source} does not exist; give the folder the call's files came back to")
    lines = [line for line in source.read_text().splitlines() if line.strip()]
    try:
        records = [json.loads(line) for line in lines]
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: {source} holds a line that is not JSON ({exc})") from exc
    if not records:
        raise SystemExit(f"error: {source} holds no record")
    suites = {r.get("suite") for r in records}
    if suites - {"gpu", "gpu-smoke"} or ("gpu-smoke" in suites and not allow_smoke):
        raise SystemExit(f"error: {source} holds records of suite {sorted(map(str, suites))}, not of the GPU call "
                         "(smoke records only with --allow-smoke)")
    device = next((r["device_name"] for r in records if r.get("device_name")), "unknown")
    # skip records carry no timestamp: the call's first measured record names the file
    stamps = [r["timestamp"] for r in records if r.get("timestamp")] or ["undated"]
    stamp = min(stamps)[:16].replace("-", "").replace(":", "").replace("T", "-")
    target = results / f"gpu-{stamp}-{re.sub(r'[^a-z0-9]+', '-', device.lower()).strip('-')}.jsonl"
    if target.exists():
        raise SystemExit(f"error: {target} exists already; these records were collected before")
    results.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")
    old, new = tables.regenerate(markdown, results)
    if new != old:
        markdown.write_text(new)
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path)
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--allow-smoke", action="store_true", help="accept records of run.sh --smoke (for tests)")
    args = p.parse_args(argv)
    try:
        target = collect(args.out_dir, args.results, args.markdown, args.allow_smoke)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{target}: {sum(1 for _ in target.open())} records; {args.markdown} regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
