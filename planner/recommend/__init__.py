"""Stage *recommend*: the Nova CPU configuration for a fleet (``cpu_config``), per host group
(``groups``: which host belongs to which aggregate).  Pure: model in, recommendation out.
"""
