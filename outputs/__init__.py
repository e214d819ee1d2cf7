"""The outputs layer: what a run leaves on disk and how it is read back.

    manifest.py   the shot manifest as typed records, the cache check, the scene anchor
    staging.py    staging folders swapped into place; only folders keyrender wrote are replaced,
                  the user's files in them carried; leftovers cleaned by keyrender's marker
    folder.py     the output folder before a run: what is keyrender's, which shot list it holds,
                  outputs against inputs
    media.py      video and image I/O (the one image reader for everything)
    report.py     report.html
    timeline.py   timeline.otio

No torch.
"""
