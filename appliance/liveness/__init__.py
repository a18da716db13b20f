"""Presentation-attack detection: is the face at the camera a live person?

`signals` holds the pure measurements over a visit's face meshes (blink, planarity);
`verdict` turns them into the per-visit decision the access policy needs.
"""

# liveness.mode: off, or which signals a visit must show (see verdict.py). Here, without
# imports, so the config schema can name them without loading OpenCV.
MODES = ("off", "planarity", "blink", "any", "both")
