"""Stage *collect*: read hosts (libvirt URIs, host files, Ansible inventories) in parallel.

``sources`` turns what the operator names into targets; ``run`` reads every target and hands
the raw documents to ``planner.snapshot.write``; ``live`` reads a few hosts now, for pre-flight.
Reads only: nothing here changes a host.
"""
