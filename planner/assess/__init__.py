"""Stage *assess*: can guest g move from host s to host d?  One pure rule per question.

``verdict`` holds the typed answer every later stage carries unchanged (``Verdict``,
``Status``); ``rules`` the rules; ``graph`` the feasibility graph over a whole inventory.
"""
