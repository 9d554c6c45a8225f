"""Bounded workloads that put the allocator in a known state, for tests and demos."""
