"""Stage *review*: what people read -- text/JSON reports of ``recommend`` and ``check``
(``report``), pandas frames for notebooks (``analysis``), plots and the HTML capacity review.
"""
