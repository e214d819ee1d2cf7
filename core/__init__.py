"""The base layer: the shot-list schema, the jobs that travel through a run, where weights come
from, atomic files, error types and image-file headers. Imports no torch and nothing above it.

    shotlist.py, shotlist_columns.py   the shot list: columns, validation, Shot and Scene
    jobs.py                            ShotJob, ShotResult, RunResult, the run's events
    weights.py                         hub ids, local paths, the offline switch, caches
    fsutil.py                          atomic writes, hashes, the cache root
    errors.py                          the package's exception types and exit codes
    imagefile.py                       image headers checked before any pixel is decoded
"""
