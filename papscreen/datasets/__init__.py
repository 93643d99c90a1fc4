"""Training data for the two stages: read it, fingerprint it, and build it from point annotations.

* :mod:`~papscreen.datasets.conventions`: layouts, sizes and folder aliases every dataset shares.
* :mod:`~papscreen.datasets.layout`: read a DB_3 (stage 1) or DB_4 (stage 2) folder into plain data.
* :mod:`~papscreen.datasets.fingerprint`: a content fingerprint, the same for every copy of a dataset.
* :mod:`~papscreen.datasets.annotations`: read and check a CSV of nucleus points beside ``images/``.
* :mod:`~papscreen.datasets.stain`: where stained, nucleus-like blobs are (so background avoids them).
* :mod:`~papscreen.datasets.build`: cut DB_3 and DB_4 from point annotations, split by image, with manifests.
"""

from papscreen.datasets.annotations import AnnotationSet, PointAnnotation, read_annotations
from papscreen.datasets.build import BuildReport, build_datasets
from papscreen.datasets.fingerprint import fingerprint_annotations, fingerprint_index, short_fingerprint
from papscreen.datasets.layout import DatasetIndex, Sample, read_dataset

__all__ = [
    "AnnotationSet",
    "BuildReport",
    "DatasetIndex",
    "PointAnnotation",
    "Sample",
    "build_datasets",
    "fingerprint_annotations",
    "fingerprint_index",
    "read_annotations",
    "read_dataset",
    "short_fingerprint",
]
