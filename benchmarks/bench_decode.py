"""Benchmark: decoding one task-query answer, ours against what users would pick instead.

Each contender turns the same ``bytes`` (one ``GET /v1/video/generations/{task_id}`` answer)
into Python objects:

* **ours**: ``anyfast_async._decode.decode_task``, the SDK's real path (one typed msgspec decode
  of the envelope into the frozen ``Task``, plus the envelope check);
* ``json.loads``: a plain dict, no model, no validation (the floor of "no typing at all");
* ``orjson.loads``: the same with the fastest dict-producing parser;
* **pydantic v2**: ``PydanticEnvelope.model_validate_json`` into a model with the same fields
  as ``Task`` (``benchmarks/pydantic_task.py``).

Three bodies: the gateway's in-progress record with the provider's payload in ``data``
(``bodies.IN_PROGRESS_BODY``, what almost every poll receives), the documented HappyHorse
example (``tests/data/query_happyhorse_success.json``, whose URLs are placeholders of ~90
characters) and a realistic one built from it, whose
``result_url``, ``fail_reason`` and ``data.output.video_url`` are 600-character signed OSS URLs
with ``&`` written as ``\\u0026``, as the gateway's Go encoder writes it.

Timing is ``timeit``-style: a loop of ``number`` calls sized to last about 0.2 s, repeated
``--repeat`` times, the contenders interleaved repeat by repeat; the table reports the median
time per decode and each contender's time divided by ours (above 1: ours is faster).
As with ``timeit``, the garbage collector is off inside the timed loops.

    python benchmarks/bench_decode.py [--repeat 15] [--quick] [--json benchmarks/decode.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import string
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import orjson
import pydantic
from bodies import IN_PROGRESS_BODY
from pydantic_task import PydanticEnvelope

from anyfast_async import Task
from anyfast_async._decode import decode_task

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTED = ROOT / "tests" / "data" / "query_happyhorse_success.json"
URL_CHARS = 600


def signed_url(kind: str, length: int = URL_CHARS) -> str:
    """A plausible signed OSS download URL of exactly ``length`` characters (deterministic):
    an STS access key, a signature and a percent-encoded base64 security token."""
    rng = random.Random(kind)
    alphabet = string.ascii_letters + string.digits
    base64 = alphabet + "+/"
    url = (
        "https://dashscope-result-bj.oss-cn-beijing.aliyuncs.com/1d/4f/20260428/a717e9c3/"
        f"e45a6a1b-6f05-43e5-ab06-ddfdc97587a7_{kind}.mp4"
        "?Expires=1777430361&OSSAccessKeyId=STS.NV"
        + "".join(rng.choices(alphabet, k=24))
        + "&Signature="
        + quote("".join(rng.choices(base64, k=27)) + "=", safe="")
        + "&x-oss-security-token=CAIS"
        + quote("".join(rng.choices(base64, k=length)), safe="")
    )[:length]
    cut = url.rfind("%", length - 2)  # do not end inside a %XX escape
    return url if cut < 0 else url[:cut] + "A" * (length - cut)


def realistic_body() -> bytes:
    """The documented example with real-sized signed URLs, ``&`` escaped as ``\\u0026``."""
    doc = json.loads(DOCUMENTED.read_bytes())
    url = signed_url("refiner")
    doc["data"]["result_url"] = url
    doc["data"]["fail_reason"] = url
    doc["data"]["data"]["output"]["video_url"] = url
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return text.replace("&", "\\u0026").encode()


def documented_body() -> bytes:
    """The documented example, compact as the gateway sends it."""
    return json.dumps(json.loads(DOCUMENTED.read_bytes()), separators=(",", ":")).encode()


def check(body: bytes) -> None:
    """Every contender must read the same values, or the race means nothing."""
    ours = decode_task(body)
    theirs = PydanticEnvelope.model_validate_json(body).data
    plain = json.loads(body)["data"]
    assert isinstance(ours, Task)
    assert theirs is not None
    assert ours.raw_status == theirs.raw_status == plain["status"]
    assert ours.raw_result_url == theirs.raw_result_url == plain.get("result_url")
    assert ours.data == theirs.data == orjson.loads(body)["data"]["data"]


CONTENDERS: dict[str, Callable[[bytes], object]] = {
    "ours": decode_task,
    "json.loads": json.loads,
    "orjson.loads": orjson.loads,
    "pydantic": PydanticEnvelope.model_validate_json,
}


def measure(body: bytes, repeat: int) -> dict[str, Any]:
    """Median µs per decode of each contender, interleaved repeat by repeat."""
    timers = {name: timeit.Timer(lambda fn=fn: fn(body)) for name, fn in CONTENDERS.items()}
    numbers = {}
    for name, timer in timers.items():
        number, seconds = timer.autorange()  # at least 0.2 s per loop
        numbers[name] = max(number, int(number * 0.2 / seconds))
    samples: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for _ in range(repeat):
        for name, timer in timers.items():
            samples[name].append(timer.timeit(numbers[name]) / numbers[name] * 1e6)
    ours = statistics.median(samples["ours"])
    row: dict[str, Any] = {"body_bytes": len(body)}
    for name, values in samples.items():
        median = statistics.median(values)
        row[name] = {
            "us_per_decode": median,
            "ratio_to_ours": median / ours,
            "min_us_per_decode": min(values),
            "loops": numbers[name],
            "samples": values,
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="timed loops per contender")
    parser.add_argument("--quick", action="store_true", help="3 loops per contender")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    repeat = 3 if args.quick else args.repeat
    bodies = {
        "in_progress": IN_PROGRESS_BODY,
        "documented": documented_body(),
        "signed_urls": realistic_body(),
    }
    for body in bodies.values():
        check(body)
    signed = decode_task(bodies["signed_urls"])
    assert signed.result_url is not None
    assert len(signed.result_url) == URL_CHARS
    assert signed.result_url.count("&") == 3  # each written \u0026, in three fields
    assert bodies["signed_urls"].count(b"\\u0026") == 9
    gc.collect()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {platform.platform()}",
        "python": sys.version.split()[0],
        "msgspec": msgspec.__version__,
        "orjson": orjson.__version__,
        "pydantic": pydantic.VERSION,
        "repeat": repeat,
        "bodies": {},
    }
    for name, body in bodies.items():
        results["bodies"][name] = measure(body, repeat)
        medians = {
            k: v["us_per_decode"] for k, v in results["bodies"][name].items() if k in CONTENDERS
        }
        print(name, json.dumps(medians), flush=True)
    report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def report(results: dict[str, Any]) -> None:
    print()
    print(
        f"Python {results['python']}; msgspec {results['msgspec']}, orjson {results['orjson']}, "
        f"pydantic {results['pydantic']}; median of {results['repeat']} interleaved loops."
    )
    print()
    print(
        "| answer | ours: decode_task -> Task | json.loads -> dict | orjson.loads -> dict | pydantic v2 model |"
    )
    print("|---|---:|---:|---:|---:|")
    labels = {
        "in_progress": "in-progress record, provider payload in data",
        "documented": "documented HappyHorse example",
        "signed_urls": "600-char signed URLs",
    }
    for name, row in results["bodies"].items():
        cells = [f"{row['ours']['us_per_decode']:.2f} µs"]
        for other in ("json.loads", "orjson.loads", "pydantic"):
            r = row[other]
            cells.append(f"{r['us_per_decode']:.2f} µs ({r['ratio_to_ours']:.2f}x)")
        print(f"| {labels[name]} ({row['body_bytes']:,} B) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
