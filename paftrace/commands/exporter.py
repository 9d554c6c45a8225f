"""`paftrace exporter`: the tracer's run loop with Prometheus metrics as its output."""

from __future__ import annotations

import socket
import sys
import threading
from typing import Any

import click

from paftrace.commands.trace import trace
from paftrace.options import TraceOptions

DEFAULT_LISTEN = "127.0.0.1:9854"
SWITCH_INTERVAL_S = 0.0005
# How often the HTTP loop looks at its stop flag: shutdown() waits for that.
SHUTDOWN_POLL_S = 0.05
# The tracer's own options, shared (same parsing, same validation, same help).
SHARED_OPTIONS = ("orders", "pid", "comm", "atomic_only", "warn_only", "stack_storage_size",
                  "disabled", "nice", "records_per_site")

EXPORTER_EXAMPLES = """\b
Examples:
  sudo paftrace exporter                          # all orders, http://127.0.0.1:9854/metrics
  sudo paftrace exporter -o 4+ --atomic-only      # only atomic failures of order >= 4
  sudo paftrace exporter --listen 0.0.0.0:9854    # reachable from other hosts (explicit)
  curl -s 127.0.0.1:9854/metrics | grep ^paftrace_page_alloc_failures
See docs/EXPORTER.md for the metrics, PromQL examples, alert rules and the systemd unit.
"""


def parse_listen(text: str) -> tuple[str, int]:
    """'127.0.0.1:9854', '[::1]:9854', '0.0.0.0:9854' -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{text!r}: use HOST:PORT, e.g. 127.0.0.1:9854 or "
                                 "[::1]:9854 (port 0 picks a free one)")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _listen(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    return parse_listen(value)


class TracerCounters:
    """The tracer's in-kernel counters as render.prometheus.CounterSource."""

    def __init__(self, tracer: Any):
        self.tracer = tracer

    def order_counts(self) -> dict[int, tuple[int, int]]:
        return self.tracer.session.order_counts()

    def failures_by_context(self) -> dict[str, int]:
        return self.tracer.failures_by_context()

    def lost(self) -> dict[str, int]:
        return self.tracer.lost()

    def reclaim_counters(self) -> dict[str, int] | None:
        from paftrace.reclaim import COUNTERS  # noqa: PLC0415

        # TraceSession's tracker of reclaim.c's maps; None without those tracepoints.
        reclaim = getattr(self.tracer.session, "reclaim", None)
        return dict(zip(COUNTERS, reclaim.read_counters().counters)) if reclaim else None


def serve(host: str, port: int, registry: Any) -> Any:
    """The client library's WSGI app on a threaded server (IPv4 or IPv6), in a thread."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server  # noqa: PLC0415

    from prometheus_client import make_wsgi_app  # noqa: PLC0415
    from prometheus_client.exposition import ThreadingWSGIServer  # noqa: PLC0415

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # one line per scrape would flood the journal

    httpd = make_server(host, port, make_wsgi_app(registry), Server, handler_class=QuietHandler)
    # The default poll_interval, 0.5 s, was most of the exporter's Ctrl-C to exit (0.57 s
    # in scripts/bench).
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_S},
                     name="metrics-http", daemon=True).start()
    return httpd


def run_exporter(options: TraceOptions, host: str, port: int, max_sites: int,
                 max_failure_series: int, duration: float | None = None) -> int:
    from prometheus_client import CollectorRegistry, ProcessCollector  # noqa: PLC0415

    from paftrace.loader import LoaderError  # noqa: PLC0415
    from paftrace.procfs.capabilities import missing_for_tracing, own_capabilities  # noqa: PLC0415
    from paftrace.render.prometheus import (  # noqa: PLC0415
        ExporterInfo,
        PrometheusSink,
        TracerCollector,
    )
    from paftrace.session import TraceSession  # noqa: PLC0415
    from paftrace.tracer import StopFlag, Tracer, error, yield_to_workload  # noqa: PLC0415

    caps = own_capabilities()
    missing = missing_for_tracing(caps)
    if missing:  # one clear line instead of bcc's "Failed to compile BPF module"
        return error(f"exporter cannot attach: missing {', '.join(missing)} (run as root, or "
                     "see docs/EXPORTER.md for the service's capabilities)")
    if "CAP_SYSLOG" not in caps:
        print("paftrace exporter: no CAP_SYSLOG: kernel stacks cannot be symbolized, "
              'call sites are counted as requester="unknown"', file=sys.stderr)
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # process_resident_memory_bytes & co.
    sink = PrometheusSink(registry, max_sites, max_failure_series)
    try:  # before the slow compile: a busy port fails at once
        httpd = serve(host, port, registry)
    except OSError as exc:
        return error(f"exporter cannot listen on {host}:{port}: {exc.strerror or exc}")
    # A scrape releases and re-takes the GIL at every map read and file read (about 60
    # times); while the run loop decodes a failure storm each re-take waited up to the
    # default 5 ms switch interval (scrape p50 46 ms, p99 146 ms in scripts/bench).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    stop = StopFlag()
    stop.install()
    session = None
    try:
        session = TraceSession(options)
        tracer = Tracer(session, options, sink)
        yield_to_workload(options.nice)  # this thread only: scrapes keep their priority
        info = ExporterInfo(kernel=session.kernel_release, order=options.order_min,
                            probes=session.attached(), refused=list(session.refused))
        registry.register(TracerCollector(TracerCounters(tracer), sink, info))
        where = f"[{host}]" if ":" in host else host
        print(f"paftrace exporter: serving http://{where}:{httpd.server_port}/metrics "
              f"(order {options.order_label}, kernel {info.kernel}, "
              f"{len(info.probes)} probes)", file=sys.stderr, flush=True)
        summary = tracer.run(stop, duration, interval=1.0, live_allocations=False)
        lost = summary["lost"]
        print(f"paftrace exporter: stopped after {summary['duration_s']:.0f} s: "
              f"{summary['failures_reported']} failures decoded, {lost['records']} records "
              f"lost, {lost['stack_errors']} stack errors", file=sys.stderr, flush=True)
    except LoaderError as exc:
        return error(str(exc))
    except Exception:
        if session is not None:  # say what the error cost before its traceback
            print(f"paftrace: {session.stats()['unhandled']} failure record(s) were not "
                  "counted; stopping on this error:", file=sys.stderr)
        raise
    finally:
        httpd.shutdown()
        httpd.server_close()
        if session is not None:
            session.close()  # detaches every probe
        stop.restore()
    return 0  # a stop by SIGTERM/SIGINT is the service's normal end


@click.command(epilog=EXPORTER_EXAMPLES)
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, callback=_listen,
              metavar="HOST:PORT",
              help="Address of the /metrics endpoint. Loopback by default; "
                   "--listen 0.0.0.0:9854 (all interfaces) is an explicit choice: "
                   "put a firewall or a TLS proxy in front.")
@click.option("--max-sites", type=click.IntRange(0, 1000), default=20, show_default=True,
              help="Call sites with their own series; failures of later sites are "
                   'counted under requester="other".')
@click.option("--max-failure-series", type=click.IntRange(1, 100000), default=200,
              show_default=True,
              help="Label sets of paftrace_page_alloc_failures_total with their own series; "
                   'later ones keep order and context with gfp/visibility/severity="other".')
@click.option("-d", "--duration", type=click.FloatRange(min=0, min_open=True), hidden=True,
              help="Stop after this many seconds (tests).")
def exporter(listen: tuple[str, int], max_sites: int, max_failure_series: int,
             duration: float | None, **filters: Any) -> None:
    """Serve page allocation failures as Prometheus metrics (long-running, root).

    Same BPF program, counters, context logic and decoding as `paftrace trace`;
    metrics are computed when Prometheus scrapes. Stops cleanly on SIGTERM.
    """
    try:
        import prometheus_client  # noqa: F401, PLC0415
    except ImportError:
        click.echo("paftrace: the exporter needs the Prometheus client library: "
                   "apt-get install python3-prometheus-client", err=True)
        sys.exit(1)
    orders = filters["orders"]
    options = TraceOptions(
        order_min=orders[0], order_max=orders[1], pid=filters["pid"], comm=filters["comm"],
        atomic_only=filters["atomic_only"], warn_only=filters["warn_only"],
        disabled=filters["disabled"], stack_storage=filters["stack_storage_size"],
        nice=filters["nice"], records_per_site=filters["records_per_site"])
    sys.exit(run_exporter(options, *listen, max_sites=max_sites,
                          max_failure_series=max_failure_series, duration=duration))


exporter.params.extend(p for p in trace.params if p.name in SHARED_OPTIONS)
