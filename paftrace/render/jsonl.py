"""JSON Lines: `attached`, one `failure` per failure, `summary` last."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from paftrace.records import Failure
from paftrace.render import Snapshot

SEPARATORS = (",", ":")
# Failure fields whose value is shared between the failures of a storm (the
# decoder's per-stack and per-mask caches, the tracer's per-sample snapshot):
# their JSON text is made once per object, not once per record.
SHARED_FIELDS = ("gfp_flags", "stack")
FRAGMENTS_MAX = 1024


# One encoder: json.dumps with arguments builds a new one per call.
_ENCODER = json.JSONEncoder(separators=SEPARATORS)


def dumps(obj: Any) -> str:
    # JSONEncoder escapes control characters, so comm names are safe here.
    return _ENCODER.encode(obj)


class Fragments:
    """JSON text of objects shared between records, by identity. The object is
    kept with its text, so its id cannot be reused by another object meanwhile;
    shared objects are never changed (see paftrace/decode.py)."""

    def __init__(self) -> None:
        self._texts: dict[int, tuple[Any, str]] = {}

    def text(self, obj: Any) -> str:
        hit = self._texts.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        if len(self._texts) >= FRAGMENTS_MAX:
            self._texts.clear()
        text = dumps(obj)
        self._texts[id(obj)] = (obj, text)
        return text


def splice(head: dict, tail: list[tuple[str, str]]) -> str:
    """`head` encoded, then the already encoded (key, JSON text) pairs of `tail`."""
    text = dumps(head)
    if not tail:
        return text
    rest = ",".join(f'"{key}":{value}' for key, value in tail)  # keys: our own names
    return f"{text[:-1]},{rest}}}" if len(text) > 2 else f"{{{rest}}}"


class JsonRenderer:
    def __init__(self, out: TextIO | None = None):
        self.out = out or sys.stdout
        self.fragments = Fragments()

    def _write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def _emit(self, obj: dict) -> None:
        self._write(dumps(obj))

    def attached(self, info: dict) -> None:
        self._emit(info)

    def failure(self, failure: Failure) -> None:
        self._write(self.encode_failure(failure))

    def encode_failure(self, failure: Failure) -> str:
        """The failure object as json.dumps would write it, up to key order: the
        shared fields (and the memory snapshot's zones) come last, from cache."""
        obj = failure.to_json()
        tail = [(key, self.fragments.text(obj.pop(key))) for key in SHARED_FIELDS]
        snapshot = obj.pop("buddyinfo")
        if snapshot is not None:
            zones = snapshot.get("zones")
            rest = {k: v for k, v in snapshot.items() if k != "zones"}
            tail.append(("buddyinfo", splice(rest, [("zones", self.fragments.text(zones))])
                         if zones is not None else dumps(snapshot)))
        else:
            tail.append(("buddyinfo", "null"))
        return splice(obj, tail)

    def event(self, record: dict) -> None:
        self._emit(record)

    def tick(self, snapshot: Snapshot) -> None:
        pass

    def finish(self, summary: dict) -> None:
        self._emit(summary)

    def close(self) -> None:
        pass
