"""JSON Lines: `attached`, one `failure` per failure, `summary` last."""

from __future__ import annotations

import json
from typing import Any

from paftrace.records import Failure
from paftrace.render import Snapshot
from paftrace.render.output import TextSink, stdout_writer

SEPARATORS = (",", ":")
# Failure fields whose value is shared between the failures of a storm (the
# decoder's per-stack and per-mask caches, the stall log's "no stalls" answer):
# their JSON text is made once per object, not once per record.
SHARED_FIELDS = ("gfp_flags", "stack", "stall")
# Fields a call site repeats in every failure: encoded once per distinct tuple.
SITE_FIELDS = ("order", "gfp", "migratetype", "context", "softirq", "irq", "context_source",
               "requester", "blame", "visibility", "severity", "rule", "warned", "printed")
# Objects made anew for each failure around members that are shared: the cause
# evidence (paftrace/cause.py: a request's constant evidence, the zone checks of a
# sample) and the memory snapshot (paftrace/tracer.py: one per sample, order and mask).
NESTED_SHARED = {"cause_evidence": ("zones", "gfp_flags", "watermark_rule", "stall"),
                 "buddyinfo": ("zones",)}
FRAGMENTS_MAX = 1024
NESTED_BUT_EVIDENCE = {k: v for k, v in NESTED_SHARED.items() if k != "cause_evidence"}
# The record's own fields: the rest are spliced in from the caches above.
_OWN_FIELDS = tuple(name for name in Failure.json_fields()
                    if name not in (*SITE_FIELDS, *SHARED_FIELDS, *NESTED_SHARED))


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


def splice(head: dict, tail: list[tuple[str, str]], members: str = "") -> str:
    """`head` encoded, then `members` (encoded `"key":value` pairs), then the
    already encoded (key, JSON text) pairs of `tail`."""
    parts = [dumps(head)[1:-1], members,
             ",".join(f'"{key}":{value}' for key, value in tail)]  # keys: our own names
    return "{" + ",".join(p for p in parts if p) + "}"


class JsonRenderer:
    def __init__(self, out: TextSink | None = None):
        self.out = out or stdout_writer()
        self.fragments = Fragments()
        self._site_members: dict[tuple, str] = {}

    def _emit(self, obj: dict) -> None:
        self.out.write(dumps(obj) + "\n")
        self.out.flush()

    def attached(self, info: dict) -> None:
        self._emit(info)

    def failure(self, failure: Failure) -> None:
        # Flushed by flush() after each batch: one write per batch, not per record
        # (in a storm the write and the reader's wakeup cost as much as the encoding).
        self.out.write(self.encode_failure(failure) + "\n")

    def flush(self) -> None:
        self.out.flush()

    def encode_failure(self, failure: Failure) -> str:
        """The failure object as json.dumps would write it, up to key order: the
        record's own fields, then its call site's (from cache), then the shared
        fields and the memory snapshot (its zones from cache)."""
        obj = failure.to_json(_OWN_FIELDS)
        site = tuple(getattr(failure, key) for key in SITE_FIELDS)
        members = self._site_members.get(site)
        if members is None:
            if len(self._site_members) >= FRAGMENTS_MAX:
                self._site_members.clear()
            members = dumps(dict(zip(SITE_FIELDS, site)))[1:-1]
            self._site_members[site] = members
        tail = [(key, self.fragments.text(getattr(failure, key))) for key in SHARED_FIELDS]
        evidence, shared = failure.cause_evidence, failure.shared_evidence
        nested = NESTED_SHARED
        if shared is not None and evidence is not None and len(evidence) == len(shared) + 1:
            # A storm's shared verdict: encoded once, with this failure's age.
            tail.append(("cause_evidence", splice(
                {"sample_age_ms": evidence["sample_age_ms"]}, [],
                self.fragments.text(shared)[1:-1])))
            nested = NESTED_BUT_EVIDENCE
        tail += [(key, self._with_shared(getattr(failure, key), names))
                 for key, names in nested.items()]
        return splice(obj, tail, members)

    def _with_shared(self, nested: dict | None, shared: tuple[str, ...]) -> str:
        """`nested` encoded, the members named in `shared` from the fragment cache."""
        if nested is None:
            return "null"
        own = {k: v for k, v in nested.items() if k not in shared}
        return splice(own, [(k, self.fragments.text(nested[k])) for k in shared
                            if k in nested])

    def event(self, record: dict) -> None:
        self._emit(record)

    def tick(self, snapshot: Snapshot) -> None:
        pass

    def finish(self, summary: dict) -> None:
        self._emit(summary)

    def close(self) -> None:
        pass
