"""The fault kit: drive a seeded command stream through a deployment while injecting faults,
then check the result against the domain's pure reference model.

* :mod:`.workload` — the seeded stream (creates, updates, stale updates, deletes, re-creates,
  duplicate deliveries, poison) and its reference outcome (``decide`` folded per resource);
* :mod:`.check` — the invariants, read from PostgreSQL and the topics: nothing lost, nothing
  applied twice, every outcome as the model says, events contiguous per resource with stable
  ``event_id`` s, every rejection announced, no good command dead-lettered, outbox drained;
* :mod:`.targets` — what faults act on: processes this kit starts, the local stack's
  PostgreSQL and Kafka, or shell hooks for a deployment of one's own;
* :mod:`.campaign` — the schedule of faults (seeded) and the run;
* :mod:`.report` — the table printed at the end.

``phoenix-resources soak`` (``entrypoints/cli/soak.py``) and ``make soak`` run it.
"""
