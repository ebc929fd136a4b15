"""Stage *recommend*: fleet-wide answers from the rules -- the feasibility graph over a whole
inventory (``graph``), the Nova CPU configuration (``cpu_config``), host groups (``groups``:
which host belongs to which aggregate).  Pure: model in, answers out.
"""
