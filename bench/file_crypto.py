"""What sealing record files at rest costs in CPU: a micro-benchmark, no services needed.

Per file size: sealing (a new data key, its wrap, AES-256-GCM per 64 KiB segment) as the
hand-over does before its ledger write, opening whole as the registry upload and a small
download do, and opening one segment of a large file as a range request does. Figures are
CPU time of this process (``time.process_time``), per operation and per MB of plaintext,
with a plain sha256 of the same bytes beside them for scale (the bridge computes one per
fetched file already).

``python -m bench.file_crypto [--seconds S]``; prints a table and one BENCH_JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from collections.abc import Callable

from bench.common import cpu_probe_ms, print_json_line, print_table
from bridge.adapters.file_crypto import FileKeys, new_key_line, open_file, open_span, rewrap, seal
from bridge.domain.file_segments import SEGMENT_BYTES, span

SIZES = {"5 KB": 5_000, "20 KB": 20_000, "50 KB": 50_000, "1 MB": 1_000_000, "8 MB": 8_000_000}


def cpu_per_call(work: Callable[[], object], seconds: float) -> float:
    """CPU seconds per call of *work*, over at least *seconds* of CPU."""
    work()  # warm up
    calls, start = 0, time.process_time()
    while (spent := time.process_time() - start) < seconds:
        for _ in range(10):
            work()
        calls += 10
    return spent / calls


def main(seconds: float) -> dict[str, object]:
    text = f"{new_key_line('bench-old')},{new_key_line('bench')}"
    keys = FileKeys.parse(text, setting="bench", active="bench")
    old_keys = FileKeys.parse(text, setting="bench", active="bench-old")
    rows: list[list[object]] = []
    figures: dict[str, object] = {"bench": "file_crypto", "cpu_probe_ms_before": cpu_probe_ms()}
    for label, size in SIZES.items():
        content = os.urandom(size)
        sha = hashlib.sha256(content).hexdigest()
        sealed = seal(keys, sha, content)
        per = {
            "seal": cpu_per_call(lambda c=content, s=sha: seal(keys, s, c), seconds),
            "open": cpu_per_call(lambda s=sha, n=size, f=sealed: open_file(keys, s, n, f), seconds),
            "sha256": cpu_per_call(lambda c=content: hashlib.sha256(c).digest(), seconds),
        }
        if size > SEGMENT_BYTES:
            part = span(size, size // 2, 1000)
            assert sealed.ciphertext is not None
            data = sealed.ciphertext[part.sealed_start : part.sealed_start + part.sealed_bytes]
            per["open_range"] = cpu_per_call(
                lambda s=sha, n=size, f=sealed, p=part, d=data: open_span(keys, s, n, f, p, d),
                seconds,
            )
        mb = size / 1e6
        rows.append([
            label, f"{per['seal'] * 1e6:.1f}", f"{per['seal'] / mb * 1e3:.2f}",
            f"{per['open'] * 1e6:.1f}", f"{per['open'] / mb * 1e3:.2f}",
            f"{per.get('open_range', 0) * 1e6:.1f}" if "open_range" in per else "-",
            f"{per['sha256'] / mb * 1e3:.2f}",
        ])  # fmt: skip
        figures[label.replace(" ", "")] = {
            "seal_us": round(per["seal"] * 1e6, 2),
            "open_us": round(per["open"] * 1e6, 2),
            "seal_ms_per_mb": round(per["seal"] / mb * 1e3, 3),
            "open_ms_per_mb": round(per["open"] / mb * 1e3, 3),
            "sha256_ms_per_mb": round(per["sha256"] / mb * 1e3, 3),
            **({"open_one_segment_us": round(per["open_range"] * 1e6, 2)}
               if "open_range" in per else {}),
        }  # fmt: skip
    src = seal(old_keys, "00" * 32, b"")  # a data key wrapped by the old key
    figures["rewrap_us"] = round(cpu_per_call(lambda: rewrap(keys, src), seconds) * 1e6, 2)
    figures["cpu_probe_ms_after"] = cpu_probe_ms()
    print_table(
        "record files at rest: CPU of this process (AES-256-GCM, 64 KiB segments)",
        ["file", "seal µs", "seal ms/MB", "open µs", "open ms/MB", "1 segment µs",
         "sha256 ms/MB"],
        rows,
    )  # fmt: skip
    print(f"\nre-wrapping one data key (rotation): {figures['rewrap_us']} µs")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="CPU seconds per figure")
    print_json_line(main(parser.parse_args().seconds))
