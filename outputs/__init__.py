"""The outputs layer: what a run leaves on disk and how it is read back.

    manifest.py   the shot manifest as typed records, the cache check, the scene anchor
    staging.py    staging folders swapped into place; only folders keyrender wrote are replaced
    media.py      video and image I/O (the one image reader for everything)
    report.py     report.html
    timeline.py   timeline.otio

No torch.
"""
