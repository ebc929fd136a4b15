"""The snapshot format: a directory of the raw documents every host gave, plus a manifest.

``read`` loads a snapshot into ``planner.model.Inventory`` (its files read by ``files``:
bounded, never leaving the snapshot; its JSON checked by ``facts``; one host reached twice
merged by ``identity``); ``write`` writes one, atomically.  This package is the only place
that knows the format's layout (see docs/snapshot.md).
"""
