"""Readers of the kernel's memory-state files (/proc/buddyinfo, zoneinfo, pagetypeinfo).

Parsers are pure functions of the file text so they can be tested on captures
from other machines; `sampler` is the only module that reads the memory-state files,
through `files` (kept open, read again with one system call).
"""
