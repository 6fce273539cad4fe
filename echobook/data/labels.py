"""The label values shared across formats: one home for each vocabulary.

The synthetic engine writes these values, and readers of the public datasets map theirs to them:

- chamber label maps (pixel values of a segmentation), CAMUS's values;
- apical views (EchoNet-Dynamic is A4C; CAMUS and HMC-QU also have A2C), and the classes of view identification;
- the six wall segments of an apical view and their wall motion (HMC-QU);
- image quality (CAMUS's vocabulary).
"""
from __future__ import annotations

# Chamber label values of a segmentation map, as CAMUS stores them.
BACKGROUND, LV_CAVITY, LV_MYOCARDIUM, LEFT_ATRIUM = 0, 1, 2, 3
CHAMBER_LABELS = {BACKGROUND: "background", LV_CAVITY: "LV cavity", LV_MYOCARDIUM: "LV myocardium",
                  LEFT_ATRIUM: "LA"}

VIEWS = ("A4C", "A2C")
VIEW_CHOICES = VIEWS + ("mixed",)  # what a synthetic set may ask for: one view, or half and half
# the classes of view identification: the two apical views, parasternal long and short axis (mid-papillary), and
# "other" (the synthetic engine draws a subcostal four-chamber view for it)
VIEW_CLASSES = VIEWS + ("PLAX", "PSAX", "other")
# which chamber labels each view's maps hold (the other values are absent, not background by mistake)
VIEW_CHAMBERS = {"A4C": (LV_CAVITY, LV_MYOCARDIUM, LEFT_ATRIUM), "A2C": (LV_CAVITY, LV_MYOCARDIUM, LEFT_ATRIUM),
                 "PLAX": (LV_CAVITY, LV_MYOCARDIUM, LEFT_ATRIUM), "PSAX": (LV_CAVITY, LV_MYOCARDIUM),
                 "other": (LV_CAVITY, LV_MYOCARDIUM, LEFT_ATRIUM)}

# The six wall segments of the A4C/A2C views in HMC-QU order (SEG1,2,3,5,6,7; the apical cap SEG4 is left out):
# image-left wall from base to apex, then image-right wall from apex to base.
SEGMENTS = {
    "A4C": ("basal inferoseptal", "mid inferoseptal", "apical septal",
            "apical lateral", "mid anterolateral", "basal anterolateral"),
    "A2C": ("basal inferior", "mid inferior", "apical inferior",
            "apical anterior", "mid anterior", "basal anterior"),
}
WALL_MOTION = {0: "normal", 1: "hypokinetic", 2: "akinetic"}  # per segment

QUALITIES = ("Good", "Medium", "Poor")  # best first
