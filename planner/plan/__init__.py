"""Stage *plan*: what to move where, decided before anything moves.

``migration`` builds a frozen ``MigrationPlan`` for one guest (pre-flight verdicts, libvirt
flags, storage to copy); ``nova_move`` the same for a move through Nova's API (the server,
Nova's request, Nova's refusals), and a Nova drain; ``drain`` builds a ``DrainPlan`` (waves,
booked capacity, guests skipped with their reasons).  Pure:
the hosts' state and the pre-flight are passed in; nothing here changes a host.
"""
