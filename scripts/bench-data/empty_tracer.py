"""Load scripts/bench-data/empty.c (or the file named by argv[1]) with bcc, say "attached",
wait for SIGINT/SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import sys
from pathlib import Path

from paftrace.tracefs import TraceFs


def main() -> int:
    TraceFs().ensure_mounted()  # before `import bcc`, as paftrace's loader does
    import bcc  # noqa: PLC0415

    source = sys.argv[1] if len(sys.argv) > 1 else "empty.c"
    prog = bcc.BPF(src_file=str(Path(__file__).with_name(source)))
    print("attached", flush=True)
    for sig in (signal.SIGINT, signal.SIGTERM):  # SIGINT may arrive ignored (background)
        signal.signal(sig, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        signal.pause()
    prog.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
