"""migplan: a live-migration compatibility planner for libvirt/KVM clusters."""

__version__ = "0.1.0"
