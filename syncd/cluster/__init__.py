"""Past one host: several daemons share the pairs through PostgreSQL, on procrastinate.

Only imported when ``[daemon] cluster`` (or ``cluster_url_file``) is set: a single-host
daemon never loads procrastinate. :mod:`syncd.cluster.jobs` maps requests to jobs (pure),
:mod:`syncd.cluster.database` holds the run log and the slot claims, and
:mod:`syncd.cluster.coordinator` defers jobs and runs this daemon's worker, and
:mod:`syncd.cluster.fence` holds a pair's advisory lock for the whole of its run, and
:mod:`syncd.cluster.indexes` moves a pair's index with it from daemon to daemon.
"""
