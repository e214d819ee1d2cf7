"""The shot layer: one shot from its keyframes to its manifest.

    render.py   render_shot(job, context): the steps (keyframes, checks, written keyframes,
                filled video, manifest) in a staging folder swapped into place
    refine.py   the identity loop: checks -> what to regenerate -> the shot's budget
    models.py   RenderContext: the models of a run, loaded on first use and shared by its shots
    options.py  RenderOptions (what a run is asked to do) and the decisions the plan makes with it
                for each shot (span_plan: flow options and in-betweener; face_model_name: the judge)

Importing this imports no torch: the stages are imported inside the steps.
"""

from keyrender.shot.render import render_shot, render_shot_safely

__all__ = ["render_shot", "render_shot_safely"]
