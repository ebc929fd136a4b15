"""Stage *act*: run a plan through a driver, then ask both hosts where the guest is.

``migrate`` runs one ``MigrationPlan`` and verifies it (the never-lose-a-guest rule lives
here, and for a move through Nova the agreement of Nova and libvirt); ``drain`` runs a
``DrainPlan`` wave by wave.  The driver (libvirt's or Nova's) is injected: this stage imports
no adapter.
"""
