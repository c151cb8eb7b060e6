"""The composition root: the ``scheduler`` command, the coordinator and worker assembly,
the job-process entry point and the embedded PostgreSQL manager. Nothing imports it."""
