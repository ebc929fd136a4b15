"""Stage *parse*: untrusted XML and JSON of a host or guest to the model (``planner.model``).

Hardened lxml only (``xmlsafe``); hosts in ``host``, guests in ``guest``, the snapshot's
guest digests in ``digest``, libvirt's memory units in ``units``.  No file paths: callers
hand in bytes and a label naming where they came from.
"""
