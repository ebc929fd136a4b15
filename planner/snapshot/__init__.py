"""The snapshot format: a directory of the raw documents every host gave, plus a manifest.

``read`` loads a snapshot into ``planner.model.Inventory``; ``write`` writes one, atomically.
This package is the only place that knows the format's layout (see docs/snapshot.md).
"""
