"""Stage *plan*: what to move where, decided before anything moves.

``migration`` builds a frozen ``MigrationPlan`` for one guest (pre-flight verdicts, libvirt
flags, storage to copy); ``drain`` builds a ``DrainPlan`` (waves, booked capacity).  Pure:
the hosts' state and the pre-flight are passed in; nothing here changes a host.
"""
