"""Schedules, one module per question asked of them (all pure, ``now`` a parameter).

- ``validate``: why a schedule the API schema accepts cannot work (the Ready message);
- ``fires``: when a schedule fires (cron, hourly, once; time zones and DST), cached;
- ``slots``: which slots are due at ``now``, which were missed and why (missedRunPolicy);
- ``describe``: a schedule in words and its next slots, for status, ``kubectl get`` and
  the CLI.

Each imports only the ones above it in this list.
"""
