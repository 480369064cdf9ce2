"""The operator console in the browser (``/console``): overview, dead letters, mapping playground.

Off unless ``[service] console_password`` is set. Server-rendered HTML with a little hand-written
JavaScript and CSS shipped in ``static/``; nothing is loaded from elsewhere, so it works offline.
"""
