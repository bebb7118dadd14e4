"""Delivery: what a committed run hands to the platform, and when.

- :mod:`~shared.delivery.changes`: the run's changes against the task cache (the last delivered view),
  deletion marks included, written as ``changes.jsonl`` beside the view.
- the cache's per-record digest tables (blob, 16 bytes per record) are :mod:`shared.storage.digests`'s.
- :mod:`~shared.delivery.removals`: why an object left the view (deleted, soft-deleted, out of scope).
- :mod:`~shared.delivery.cache`: when the cache is cleared (daily UTC hours, on demand).
- :mod:`~shared.delivery.batches` and :mod:`~shared.delivery.load`: batches with stable ids, POSTed to the
  platform's web API through the connector's retry table.
- :mod:`~shared.delivery.release`: the order of it all (guard, load, cache), and the operator's two calls
  (the CLI's and the admin API's): ``approve(services, task, connector, run_id)`` of a held run and
  ``clear_cache(services, task)``.
- :mod:`~shared.delivery.failures`: the failure record and its log event.
- :mod:`~shared.delivery.housekeeping`: old run folders.
"""
