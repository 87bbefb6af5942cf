"""Processes: each module or package wires one (worker, relay, http/, grpc/, cli/) from
``bootstrap``; ``supervisor`` runs a process's components and ``runner`` the worker, relay
and ``run`` processes."""
