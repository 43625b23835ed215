"""One cold start, measured inside a fresh interpreter.

Run as ``python -m tools.bench.cold_start <event.json> <module>``: imports the handler module,
serves the event once and prints the seconds both took as JSON. Interpreter start-up is the
same for every variant, so it is left out.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    event_path, module = sys.argv[1], sys.argv[2]
    with open(event_path, encoding="utf-8") as handle:
        event = json.load(handle)
    from tools.devserver.lambda_host import FakeLambdaContext

    started = time.perf_counter()
    handler = __import__(module, fromlist=["lambda_handler"]).lambda_handler
    imported = time.perf_counter()
    result = handler(event, FakeLambdaContext("bench", timeout_seconds=30))
    done = time.perf_counter()
    status = result.get("statusCode") if isinstance(result, dict) else None
    failures = len(result.get("batchItemFailures", [])) if isinstance(result, dict) else 0
    print(
        json.dumps(
            {
                "import_s": imported - started,
                "total_s": done - started,
                "status": status,
                "failures": failures,
            }
        )
    )


if __name__ == "__main__":
    main()
