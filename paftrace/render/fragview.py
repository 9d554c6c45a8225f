"""The `paftrace frag` views: plain lines per interval, and a live view that puts the
zones, the pageblock mix and the fragmenters first (paftrace/render/frag.py draws them)."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text

from paftrace.render import Snapshot, printable
from paftrace.render.frag import fragmenter_lines, fragmenters_panel, pageblock_table, site_label
from paftrace.render.live import LiveRenderer
from paftrace.render.memory import memory_panel
from paftrace.render.plain import PlainRenderer


class FragPlainRenderer(PlainRenderer):
    """`paftrace frag --plain`: one line per interval, the whole section at the end."""

    def attached(self, info: dict) -> None:
        self._print(f"paftrace frag: order {info['order']} on {info['kernel']}. Ctrl-C to end.")

    def failure(self, failure: object) -> None:
        pass  # counted in the summary; `paftrace --order N` shows each one

    def event(self, record: dict) -> None:
        pass

    def tick(self, snapshot: Snapshot) -> None:
        section = snapshot.fragmentation
        if not section:
            return
        top = section["sites"][0] if section["sites"] else None
        self._print(f"{snapshot.elapsed_s:5.0f}s  fallbacks {section['fallbacks']:,}  "
                    f"fragmenting {section['fragmenting']:,}  claimed {section['steals']:,}"
                    + (f"  top: {printable(site_label(top))}" if top else ""))

    def finish(self, summary: dict) -> None:
        self._print(f"Summary after {summary['duration_s']:.1f}s "
                    f"({summary['failures_matched']} failures at order {summary['order']}):")
        for line in fragmenter_lines(summary.get("fragmenters"), top=10):
            self._print(line)

    def close(self) -> None:
        pass


class FragLiveRenderer(LiveRenderer):
    """`paftrace frag` on a terminal: zones, pageblock mix and fragmenters first."""

    def view(self) -> RenderableType:
        s = self.snapshot
        if s is None:
            return self.header
        parts: list[RenderableType] = [self.header, Text(f"{s.elapsed_s:.0f}s elapsed")]
        if s.memory is not None:
            parts.append(memory_panel(s.memory, s.order_min))
        if s.fragmentation is not None:
            parts.append(pageblock_table(s.fragmentation))
            parts.append(fragmenters_panel(s.fragmentation, top=8))
        return Group(*parts)

