"""One cold start, measured inside a fresh interpreter.

Run as ``python -m tools.bench.cold_start <event.json> <module>``: imports the handler module,
serves the event once, prints the seconds both took as JSON and leaves at once (a Lambda
process is never torn down between requests, so teardown is not part of its cold start). It
also prints the moments the import ended and the answer came on the system-wide monotonic
clock, so the caller, which noted when it spawned the process, knows the whole-process cold
import (interpreter start included) and the whole-process first answer from one run, and
the CPU time the process had used at both moments (``time.process_time``, from the process's
start): on a shared machine, time spent waiting for a core inflates wall times but not that.
Only the
standard library is imported here besides the handler, so nothing the handler needs is loaded
for it.
"""

from __future__ import annotations

import json
import os
import sys
import time


class _Context:
    """What handlers read from the Lambda context object."""

    function_name = "bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:bench"
    aws_request_id = "bench-cold-start"
    log_group_name = "/aws/lambda/bench"
    log_stream_name = "local"

    def __init__(self, timeout_seconds: float) -> None:
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main() -> None:
    event_path, module = sys.argv[1], sys.argv[2]
    with open(event_path, encoding="utf-8") as handle:
        event = json.load(handle)
    started = time.monotonic()
    handler = __import__(module, fromlist=["lambda_handler"]).lambda_handler
    imported, cpu_imported = time.monotonic(), time.process_time()
    result = handler(event, _Context(30))
    done, cpu_done = time.monotonic(), time.process_time()
    status = result.get("statusCode") if isinstance(result, dict) else None
    failures = len(result.get("batchItemFailures", [])) if isinstance(result, dict) else 0
    print(
        json.dumps(
            {
                "import_s": imported - started,
                "total_s": done - started,
                "imported_at": imported,
                "answered_at": done,
                "cpu_at_import_s": cpu_imported,
                "cpu_at_answer_s": cpu_done,
                "status": status,
                "failures": failures,
            }
        ),
        flush=True,
    )
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
