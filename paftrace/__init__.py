"""paftrace: live eBPF tracer for Linux page allocation failures."""

__version__ = "0.1.0"
