"""Stage *review*: what people read -- text/JSON reports of ``recommend`` (``report``, with
``why`` for stranded guests) and ``check`` (``check``), the Nova settings files
(``nova_files``: configparser and YAML), terminal-safe text (``text``), pandas frames for
notebooks (``analysis``), plots and the HTML capacity review.
"""
