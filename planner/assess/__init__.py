"""Stage *assess*: can guest g move from host s to host d?  One pure rule per question.

``verdict`` holds the typed answer every later stage carries unchanged (``Verdict``,
``Status``) and the rules.  The fleet-wide graph is ``planner.recommend.graph``.
"""
