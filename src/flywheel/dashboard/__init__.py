"""The monitoring dashboard of one use case: what its reports, prediction log and registry say, as
interactive charts on one HTML page.

Owns the page served at ``/dashboard`` (and ``flywheel dashboard --out``'s static copy): ``data``
gathers each section from the workdir's files and the registry (reading, never computing a report
again), ``figures`` turns them into Plotly figures as plain dicts, ``page`` lays out the HTML,
``assets`` finds the Plotly bundle the ``plotly`` wheel ships (the page works offline), ``routes``
serves it. Nothing here is imported by the prediction path: the service imports ``routes`` alone,
and the rest on the first request for the page.
"""
