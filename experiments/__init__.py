"""The product layer (imports ad_core, never the reverse), in wings from the ground up:

- ``readers``: the strict readers of every file a person hands over;
- ``definition``: what a run is (each setting declared once, methods, presets, scenarios, built-in
  datasets and domains);
- ``evaluation``: results, their evaluation and statistics, published references;
- ``execution``: running it (the plan, data preparation, the runner, executors, caches);
- ``records``: what a run leaves in its folder (artifacts, provenance, submission maps);
- ``gates``: goldens, compare, verdicts;
- ``reporting``: report and figures;

with ``study`` (the main job) and ``cli`` (``ad-repro``) on top.  An import only runs down this list.
"""
