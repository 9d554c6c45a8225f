"""Workloads that make the kernel fail or allocate: provoke, network load, scenarios."""
