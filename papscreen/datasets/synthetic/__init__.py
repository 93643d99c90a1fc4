"""Synthetic Pap smear data: DB_3- and DB_4-shaped datasets and annotated fields, offline and deterministic.

Tests, the demo and CI run on this instead of patient data, so it aims to be learnable but not trivial: every
class overlaps its neighbours in each single feature (nucleus size, darkness, nuclear-to-cytoplasmic ratio)
and only combinations of features separate them well.

Morphology model (sizes at full resolution, about 2 px per micrometre; fields are 2048x1536):

* **NILM**: large flat polygonal superficial and intermediate cells (120-260 px), translucent pink-orange
  (eosinophilic) or blue-green (cyanophilic) cytoplasm, sometimes folded, with a small round nucleus
  (12-18 px across; dense and pyknotic in superficial cells, paler and vesicular in intermediate ones).
  About one in eight is a small parabasal/metaplastic cell with dense cytoplasm and a larger nucleus, the
  classic mimic of HSIL.
* **LSIL**: koilocytes: large cells with a nucleus about three times the normal area (30-45 px), moderately
  dark with mildly irregular contour, usually a clear perinuclear halo with a condensed rim, a third
  binucleate.
* **HSIL**: parabasal-size cells (60-110 px) whose nucleus (25-40 px) fills much of the cell: high N:C ratio,
  hyperchromatic, coarse chromatin, irregular notched contour; occasionally binucleate.
* **SCC**: pleomorphic cells (spindle, tadpole, bizarre or round), often dense orange keratinised cytoplasm,
  very dark irregular nuclei of very variable size, sometimes several, usually with tumour diathesis around
  (granular necrotic debris, lysed blood, a dirty haze).
* **Everything else**: neutrophils (2-5 dark lobes, no squamous cytoplasm) scattered and in clusters,
  lymphocytes, granular debris and nucleus-free cytoplasm fragments, mucus strands, bacteria-like rods,
  red blood cells, cells cut by the image border, overlapping cells.

Rendering happens in optical density (Beer-Lambert: each object adds absorbance per RGB channel and
``RGB = 255 * exp(-OD)``), one object's small bounding box at a time, so overlaps darken as stacked cells do.
Each slide gets slightly different stain colours; each field a different glass tint, illumination gradient,
vignetting, focus and sensor noise, and each cell its own focal plane.

Modules, from the bottom up: ``stains`` (dye colours), ``shapes`` (outlines, masks, noise), ``morphology``
(per-class trait distributions), ``render`` (draw one object), ``optics`` (OD to RGB), ``scene`` (placement
and ground truth), ``field`` (whole fields), ``samples`` (DB_3 patches, DB_4 crops), ``generate`` (write it
all to disk).
"""

from papscreen.datasets.synthetic.field import FIELD_HEIGHT, FIELD_WIDTH, SyntheticField, render_field
from papscreen.datasets.synthetic.generate import (
    GENERATOR_NAME,
    GENERATOR_VERSION,
    SCALE_PLANS,
    ProgressCallback,
    ScalePlan,
    SyntheticSummary,
    generate_synthetic,
)
from papscreen.datasets.synthetic.morphology import CellMorphology, sample_morphology
from papscreen.datasets.synthetic.samples import render_cell_crop, render_stage1_patches, stage1_window
from papscreen.datasets.synthetic.scene import MIN_NUCLEUS_GAP, TruthCell
from papscreen.datasets.synthetic.slide import GLASS_LEVEL, SlidePlan, render_block, write_synthetic_slide

__all__ = [
    "FIELD_HEIGHT",
    "FIELD_WIDTH",
    "GENERATOR_NAME",
    "GENERATOR_VERSION",
    "GLASS_LEVEL",
    "MIN_NUCLEUS_GAP",
    "SCALE_PLANS",
    "CellMorphology",
    "ProgressCallback",
    "ScalePlan",
    "SlidePlan",
    "SyntheticField",
    "SyntheticSummary",
    "TruthCell",
    "generate_synthetic",
    "render_block",
    "render_cell_crop",
    "render_field",
    "render_stage1_patches",
    "sample_morphology",
    "stage1_window",
    "write_synthetic_slide",
]
