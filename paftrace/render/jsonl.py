"""JSON Lines: `attached`, one `failure` per failure, `summary` last."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from paftrace.records import Failure
from paftrace.render import Snapshot


class JsonRenderer:
    def __init__(self, out: TextIO | None = None):
        self.out = out or sys.stdout

    def _emit(self, obj: dict) -> None:
        # json.dumps escapes control characters, so comm names are safe here.
        self.out.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.out.flush()

    def attached(self, info: dict) -> None:
        self._emit(info)

    def failure(self, failure: Failure) -> None:
        self._emit(failure.to_json())

    def event(self, record: dict) -> None:
        self._emit(record)

    def tick(self, snapshot: Snapshot) -> None:
        pass

    def finish(self, summary: dict) -> None:
        self._emit(summary)

    def close(self) -> None:
        pass
