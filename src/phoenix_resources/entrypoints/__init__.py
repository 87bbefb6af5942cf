"""Processes: each module wires one (worker, relay, http, cli) from ``bootstrap``."""
