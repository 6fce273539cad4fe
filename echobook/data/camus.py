"""CAMUS on disk (Leclerc et al., IEEE TMI 2019): read both releases exactly as published, check them, write them.

Two releases, one reader (:class:`CamusDataset`):

* **2019, MetaImage** (``.mhd`` header + ``.raw`` bytes)::

      <root>/training/patient0001/ ... patient0450/     <root>/testing/patient0451/ ... patient0500/
        patient0001_{2CH,4CH}_{ED,ES}.mhd (+ .raw)      one frame, stored as a 3-D image of one slice
        patient0001_{2CH,4CH}_{ED,ES}_gt.mhd            label maps (training only)
        patient0001_{2CH,4CH}_sequence.mhd              the half cycle, all frames
        Info_2CH.cfg  Info_4CH.cfg                      ED, ES (1-based), NbFrame, Sex, Age, ImageQuality,
                                                        LVedv, LVesv (mL), LVef (%)
      <root>/listSubGroups/subGroup{1..10}_{training,validation,testing}.txt   ten folds, one id a line

* **2023, NIfTI** (``.nii.gz``)::

      <root>/database_nifti/patient0001/ ... patient0500/
        patient0001_{2CH,4CH}_{ED,ES}[_gt].nii.gz
        patient0001_{2CH,4CH}_half_sequence[_gt].nii.gz  the half cycle and a label map for every frame
        Info_2CH.cfg  Info_4CH.cfg                       as above, with EF and FrameRate (LVedv/LVesv may be absent)
      <root>/database_split/subgroup_{training,validation,testing}.txt

What the reader does about each quirk:

* **axis order**: SimpleITK returns ``(t, y, x)`` and nibabel ``(x, y, t)``; both come out as uint8
  ``[T, H, W]`` (rows down the image, apex at the top), and the pixel spacing as
  ``(mm per row, mm per column)`` from the header, so that volumes come out in mL;
* **ED after ES**: some sequences were stored from ES to ED. The reader reverses them so that frame 0
  is ED (as vital does), counts them in ``problems`` and says so once with a warning;
* **cfg keys**: ``ED``, ``ES``, ``NbFrame`` and ``ImageQuality`` are required (a missing one raises a
  :class:`CamusFormatError` naming the file and the key); EF is ``LVef`` (2019) or ``EF`` (2023); a cfg
  without either gives NaN (counted); ``LVedv``/``LVesv`` may be absent (NaN);
* **a ``.raw`` shorter than its header says** raises a :class:`CamusFormatError` naming both files and
  the byte counts (SimpleITK's own message blames a missing file);
* **a missing label map** (a training patient without ``_gt``) is counted; reading it raises
  :class:`FileNotFoundError` naming the file. The 2019 testing patients have none by design.

Label maps hold :data:`echobook.data.labels.CHAMBER_LABELS`' values (0 background, 1 LV cavity,
2 myocardium, 3 left atrium), CAMUS's own.

:class:`CamusDataset` is a :class:`~echobook.data.table.VideoTable` (one row per patient, the half
sequence of one view), so the clip loaders of :mod:`echobook.data.clips` read it as they read EchoNet.
:func:`write_camus` writes the synthetic engine's hearts in either layout: the 2CH and 4CH views of a
patient are the same synthetic heart, so the biplane rule (:func:`camus_biplane`) has two views.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from echobook.data.echonet import Problems
from echobook.data.folders import prepare_output_folder
from echobook.data.geometry import biplane_volume_ml, mask_to_tracing
from echobook.data.labels import LV_CAVITY, QUALITIES
from echobook.data.table import SPLITS, split_names

RELEASES = ("2019", "2023")
CAMUS_VIEWS = ("2CH", "4CH")
INSTANTS = ("ED", "ES")
REQUIRED_CFG_KEYS = ("ED", "ES", "NbFrame", "ImageQuality")
EF_KEYS = ("LVef", "EF")  # 2019, 2023
TRAINING_DIR, TESTING_DIR, SUBGROUPS_DIR = "training", "testing", "listSubGroups"  # 2019
NIFTI_DIR, SPLIT_DIR = "database_nifti", "database_split"  # 2023
SPLIT_FILES_2023 = {"TRAIN": "subgroup_training.txt", "VAL": "subgroup_validation.txt",
                    "TEST": "subgroup_testing.txt"}
SUBGROUP_ROLES = ("training", "validation", "testing")
SUBGROUP_FOLDS = 10
SUFFIX = {"2019": ".mhd", "2023": ".nii.gz"}

# CAMUS's proportions, which the writer copies: 450 training / 50 testing patients (2019), 400/50/50 (2023),
# and image quality per view about 35 % Good, 46 % Medium, 19 % Poor (Leclerc et al. 2019, section III).
CAMUS_QUALITY_WEIGHTS = (0.35, 0.46, 0.19)
CAMUS_TEST_SHARE_2019 = 50 / 500
CAMUS_SPLIT_SHARES_2023 = {"TRAIN": 400 / 500, "VAL": 50 / 500, "TEST": 50 / 500}
# EF spread of the synthetic patients: uniform over this range puts half of them below 45 %, as in CAMUS.
CAMUS_SYNTHETIC_EF_RANGE = (15.0, 75.0)
CAMUS_SYNTHETIC_FRAME_RATE = 30.0  # frames per second of the synthetic half sequences (the release: 25-50 ish)


class CamusFormatError(ValueError):
    """A CAMUS file is not in the expected format (the message names the file and the field)."""


# Problem kinds, named once so that tests and the report use the same words.
ED_AFTER_ES = "sequences stored with ED after ES (reversed so that frame 0 is ED)"
NO_EF = "views whose cfg has no LVef/EF (EF is NaN)"
NO_VOLUMES = "2019 views whose cfg has no LVedv/LVesv (volumes are NaN)"
MISSING_MASKS = "views without their ED/ES label maps (*_gt)"
VIEW_EF_DIFFERS = "patients whose 2CH and 4CH cfg give different EF (the chosen view's used)"
UNLISTED_PATIENT = "patients in no split file (counted as TRAIN)"
LISTED_MISSING = "patients in a split file but not on disk (ignored)"
NO_SPLIT_FILES = "split files missing (every patient counted as TRAIN)"
UNKNOWN_QUALITY = "views whose ImageQuality is not Good/Medium/Poor"
FRAME_COUNT_MISMATCH = "sequences whose frame count differs from NbFrame"


# --------------------------------------------------------------------------------------------- cfg files

def read_cfg(path: str | Path) -> dict[str, str]:
    """An ``Info_*.cfg`` as ``{key: value}`` text (one ``Key: value`` a line; blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: cfg file not found")
    values = {}
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise CamusFormatError(f"{path}, line {number}: expected 'Key: value', got {line.strip()!r}")
        values[key.strip()] = value.strip()
    return values


def _number(values: dict[str, str], key: str, path: Path, kind=float):
    try:
        return kind(float(values[key])) if kind is int else float(values[key])
    except ValueError as error:
        raise CamusFormatError(f"{path}: {key}={values[key]!r} is not a number") from error


def _optional_number(values: dict[str, str], keys: Sequence[str], path: Path) -> float:
    for key in keys:
        if key in values and values[key] != "":
            return _number(values, key, path)
    return math.nan


@dataclass(frozen=True)
class CamusInfo:
    """One view's cfg, typed: frame numbers 1-based as stored, EF in %, volumes in mL (NaN where absent)."""

    ed: int
    es: int
    frame_count: int
    quality: str
    ef_percent: float
    edv_ml: float
    esv_ml: float
    frame_rate: float
    sex: str
    age: float


def parse_cfg(path: str | Path) -> CamusInfo:
    """Read and type a cfg; a missing required key raises :class:`CamusFormatError` naming file and key."""
    path = Path(path)
    values = read_cfg(path)
    missing = [key for key in REQUIRED_CFG_KEYS if key not in values]
    if missing:
        raise CamusFormatError(f"{path}: missing key(s) {', '.join(missing)} (found {', '.join(values) or 'none'})")
    info = CamusInfo(
        ed=_number(values, "ED", path, int), es=_number(values, "ES", path, int),
        frame_count=_number(values, "NbFrame", path, int), quality=values["ImageQuality"],
        ef_percent=_optional_number(values, EF_KEYS, path), edv_ml=_optional_number(values, ("LVedv",), path),
        esv_ml=_optional_number(values, ("LVesv",), path), frame_rate=_optional_number(values, ("FrameRate",), path),
        sex=values.get("Sex", ""), age=_optional_number(values, ("Age",), path),
    )
    for key, frame in (("ED", info.ed), ("ES", info.es)):
        if not 1 <= frame <= info.frame_count:
            raise CamusFormatError(f"{path}: {key}={frame} is outside frames 1..NbFrame={info.frame_count}")
    return info


# --------------------------------------------------------------------------------------------- image files

def _check_raw_size(path: Path) -> None:
    """A MetaImage's data file must hold every byte its header promises."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise CamusFormatError(f"{path}: not a readable MetaImage header ({str(error).splitlines()[-1]})") from error
    header = _mhd_fields(path)
    data_file = path.parent / header.get("ElementDataFile", path.with_suffix(".raw").name)
    if not data_file.is_file():
        raise FileNotFoundError(f"{data_file}: data file named by {path.name} (ElementDataFile) not found")
    expected = int(np.prod(reader.GetSize())) * reader.GetNumberOfComponents() * _bytes_per_element(reader)
    actual = data_file.stat().st_size
    if header.get("CompressedData", "False").lower() != "true" and actual < expected:
        raise CamusFormatError(f"{data_file}: {actual} bytes, but {path.name} says DimSize "
                               f"{' '.join(map(str, reader.GetSize()))} of {header.get('ElementType', '?')} "
                               f"= {expected} bytes (a truncated file?)")


def _mhd_fields(path: Path) -> dict[str, str]:
    fields = {}
    for line in path.read_text(errors="replace").splitlines():
        key, equals, value = line.partition("=")
        if equals:
            fields[key.strip()] = value.strip()
    return fields


def _bytes_per_element(reader) -> int:
    import SimpleITK as sitk

    sizes = {sitk.sitkUInt8: 1, sitk.sitkInt8: 1, sitk.sitkUInt16: 2, sitk.sitkInt16: 2, sitk.sitkUInt32: 4,
             sitk.sitkInt32: 4, sitk.sitkFloat32: 4, sitk.sitkFloat64: 8}
    return sizes.get(reader.GetPixelID(), 1)


def read_image(path: str | Path) -> tuple[np.ndarray, tuple[float, float]]:
    """uint8 ``[T, H, W]`` (a single frame gives T = 1) and ``(mm per row, mm per column)`` of a CAMUS file.

    ``.mhd`` through SimpleITK (arrays come ``(t, y, x)``), ``.nii``/``.nii.gz`` through nibabel
    (arrays come ``(x, y[, t])`` and are transposed). Values outside 0-255 raise.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    name = path.name.lower()
    if name.endswith(".mhd"):
        array, spacing_xy = _read_metaimage(path)
    elif name.endswith(".nii.gz") or name.endswith(".nii"):
        array, spacing_xy = _read_nifti(path)
    else:
        raise CamusFormatError(f"{path}: not a .mhd or .nii.gz file")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise CamusFormatError(f"{path}: values {array.min()}..{array.max()} do not fit uint8")
    return np.ascontiguousarray(array.astype(np.uint8)), (float(spacing_xy[1]), float(spacing_xy[0]))


def _read_metaimage(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    import SimpleITK as sitk

    _check_raw_size(path)
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)  # (t, y, x), or (y, x) for a 2-D file
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise CamusFormatError(f"{path}: expected a 2-D or 3-D image, got {array.ndim} dimensions")
    return array, tuple(image.GetSpacing()[:2])


def _read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        array = np.asarray(image.dataobj)
    except Exception as error:  # nibabel raises several kinds for a damaged file
        raise CamusFormatError(f"{path}: nibabel cannot read it ({type(error).__name__}: {error})") from error
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise CamusFormatError(f"{path}: expected (x, y) or (x, y, t), got shape {array.shape}")
    return array.transpose(2, 1, 0), tuple(float(z) for z in image.header.get_zooms()[:2])


def write_image(path: str | Path, frames: np.ndarray, mm_per_pixel: tuple[float, float]) -> None:
    """Write uint8 ``[T, H, W]`` as CAMUS stores it: ``.mhd`` (+ ``.raw``, ``DimSize = W H T``) or ``.nii.gz``
    (``(x, y, t)``, ``(x, y)`` for one frame), spacing ``(mm per row, mm per column)`` in the header."""
    path = Path(path)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 3:
        raise ValueError(f"{path}: frames must be uint8 [T, H, W], got {frames.dtype} {frames.shape}")
    row_mm, col_mm = (float(s) for s in mm_per_pixel)
    if path.name.endswith(".mhd"):
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(frames)
        image.SetSpacing((col_mm, row_mm, 1.0))
        sitk.WriteImage(image, str(path), useCompression=False)
    elif path.name.endswith(".nii.gz"):
        import nibabel as nib

        data = frames[0].T if len(frames) == 1 else frames.transpose(2, 1, 0)
        affine = np.diag([col_mm, row_mm, 1.0, 1.0])
        nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), str(path))
    else:
        raise ValueError(f"{path}: write .mhd or .nii.gz")


# --------------------------------------------------------------------------------------------- one view

@dataclass(frozen=True)
class CamusView:
    """One view of one patient: its files and its cfg, with ED/ES as 0-based frames of the sequence as read
    (ED first: ``reversed`` says the stored sequence ran ES to ED)."""

    patient: str
    view: str  # "2CH" | "4CH"
    folder: Path
    release: str  # "2019" | "2023"
    info: CamusInfo

    @property
    def reversed(self) -> bool:
        return self.info.ed > self.info.es

    @property
    def ed_frame(self) -> int:
        return self._as_read(self.info.ed - 1)

    @property
    def es_frame(self) -> int:
        return self._as_read(self.info.es - 1)

    def _as_read(self, stored_index: int) -> int:
        return self.info.frame_count - 1 - stored_index if self.reversed else stored_index

    def path(self, part: str) -> Path:
        """The file of ``part``: ``ED``, ``ES``, ``ED_gt``, ``ES_gt``, ``sequence`` or ``sequence_gt``."""
        stored = part.replace("sequence", "half_sequence") if self.release == "2023" else part
        return self.folder / f"{self.patient}_{self.view}_{stored}{SUFFIX[self.release]}"

    @property
    def has_masks(self) -> bool:
        return all(self.path(f"{instant}_gt").is_file() for instant in INSTANTS)

    def sequence(self) -> np.ndarray:
        """uint8 ``[T, H, W]``, ED first."""
        frames, _ = read_image(self.path("sequence"))
        return frames[::-1].copy() if self.reversed else frames

    def sequence_labels(self) -> np.ndarray:
        """uint8 ``[T, H, W]`` label maps of every frame (2023 only; only ED and ES are experts' contours)."""
        if self.release != "2023":
            raise FileNotFoundError(f"{self.path('sequence')}: the 2019 release has no label maps of the sequence")
        labels, _ = read_image(self.path("sequence_gt"))
        return labels[::-1].copy() if self.reversed else labels

    def frame(self, instant: str) -> np.ndarray:
        """uint8 ``[H, W]`` image at ``ED`` or ``ES``."""
        return read_image(self.path(_instant(instant)))[0][0]

    def mask(self, instant: str) -> np.ndarray:
        """uint8 ``[H, W]`` label map at ``ED`` or ``ES`` (FileNotFoundError naming the file if absent)."""
        return read_image(self.path(f"{_instant(instant)}_gt"))[0][0]

    def mm_per_pixel(self) -> tuple[float, float]:
        """(mm per row, mm per column) from the ED image's header."""
        return read_image(self.path("ED"))[1]


def _instant(instant: str) -> str:
    upper = str(instant).upper()
    if upper not in INSTANTS:
        raise ValueError(f"instant={instant!r}: choose ED or ES")
    return upper


@dataclass(frozen=True)
class CamusPatient:
    name: str  # patientNNNN
    split: str  # TRAIN | VAL | TEST
    views: dict  # {"2CH": CamusView, "4CH": CamusView}


# --------------------------------------------------------------------------------------------- the folder

def detect_release(root: str | Path) -> str:
    """``"2019"`` (training/ or testing/ inside) or ``"2023"`` (database_nifti/ inside); else a clear error."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    if (root / NIFTI_DIR).is_dir():
        return "2023"
    if (root / TRAINING_DIR).is_dir() or (root / TESTING_DIR).is_dir():
        return "2019"
    raise CamusFormatError(f"{root}: not a CAMUS folder: expected {TRAINING_DIR}/ and {TESTING_DIR}/ (2019 "
                           f"MetaImage release) or {NIFTI_DIR}/ (2023 NIfTI release) inside")


def _patient_folders(root: Path, release: str) -> list[tuple[Path, str]]:
    """(folder, release split) of every patient, by name."""
    if release == "2023":
        parents = [(root / NIFTI_DIR, "TRAIN")]
    else:
        parents = [(root / TRAINING_DIR, "TRAIN"), (root / TESTING_DIR, "TEST")]
    found = []
    for parent, split in parents:
        if parent.is_dir():
            found += [(folder, split) for folder in sorted(parent.iterdir())
                      if folder.is_dir() and folder.name.startswith("patient")]
    return sorted(found, key=lambda item: item[0].name)


def _read_id_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_splits_2023(root: Path, names: Sequence[str], problems: Problems) -> dict[str, str]:
    """{patient: TRAIN/VAL/TEST} from ``database_split``; unlisted patients are TRAIN (counted)."""
    split_of = {}
    folder = root / SPLIT_DIR
    paths = {split: folder / name for split, name in SPLIT_FILES_2023.items()}
    absent = [p.name for p in paths.values() if not p.is_file()]
    problems.add(NO_SPLIT_FILES, len(absent), absent)
    for split, path in paths.items():
        if path.is_file():
            for name in _read_id_list(path):
                split_of[name] = split
    known = set(names)
    listed_missing = sorted(set(split_of) - known)
    problems.add(LISTED_MISSING, len(listed_missing), listed_missing)
    unlisted = [n for n in names if n not in split_of]
    if not absent:
        problems.add(UNLISTED_PATIENT, len(unlisted), unlisted)
    return {name: split_of.get(name, "TRAIN") for name in names}


def read_subgroups_2019(root: Path) -> dict[int, dict[str, list[str]]]:
    """The ten folds of ``listSubGroups`` as ``{k: {"training": [...], "validation": [...], "testing": [...]}}``
    (empty where the folder is absent)."""
    folder = root / SUBGROUPS_DIR
    folds = {}
    if not folder.is_dir():
        return folds
    for k in range(1, SUBGROUP_FOLDS + 1):
        roles = {role: folder / f"subGroup{k}_{role}.txt" for role in SUBGROUP_ROLES}
        if any(path.is_file() for path in roles.values()):
            folds[k] = {role: _read_id_list(path) if path.is_file() else [] for role, path in roles.items()}
    return folds


def _read_patient(folder: Path, split: str, release: str, problems: Problems) -> CamusPatient:
    views = {}
    for view in CAMUS_VIEWS:
        info = parse_cfg(folder / f"Info_{view}.cfg")
        camus_view = CamusView(folder.name, view, folder, release, info)
        label = f"{folder.name} {view}"
        problems.add(ED_AFTER_ES, int(camus_view.reversed), [label])
        problems.add(NO_EF, int(math.isnan(info.ef_percent)), [label])
        no_volumes = release == "2019" and (math.isnan(info.edv_ml) or math.isnan(info.esv_ml))
        problems.add(NO_VOLUMES, int(no_volumes), [label])  # the 2023 cfgs may lack them by design
        problems.add(UNKNOWN_QUALITY, int(info.quality not in QUALITIES), [label])
        if not camus_view.path("sequence").is_file():
            raise FileNotFoundError(f"{camus_view.path('sequence')}: sequence file not found")
        expected_masks = release == "2023" or split != "TEST"  # the 2019 testing set has no label maps
        problems.add(MISSING_MASKS, int(expected_masks and not camus_view.has_masks), [label])
        views[view] = camus_view
    efs = [views[v].info.ef_percent for v in CAMUS_VIEWS]
    if not any(math.isnan(e) for e in efs) and abs(efs[0] - efs[1]) > 0.5:
        problems.add(VIEW_EF_DIFFERS, 1, [folder.name])
    return CamusPatient(folder.name, split, views)


def read_patients(root: str | Path, problems: Problems | None = None) -> tuple[str, list[CamusPatient]]:
    """The release and every patient of a CAMUS folder (cfgs read, images not)."""
    root = Path(root)
    problems = Problems() if problems is None else problems
    release = detect_release(root)
    folders = _patient_folders(root, release)
    if not folders:
        raise CamusFormatError(f"{root}: no patientNNNN folder found in the {release} layout")
    if release == "2023":
        split_of = read_splits_2023(root, [f.name for f, _ in folders], problems)
        folders = [(folder, split_of[folder.name]) for folder, _ in folders]
    return release, [_read_patient(folder, split, release, problems) for folder, split in folders]


class CamusDataset:
    """A CAMUS folder of either release, one view's half sequences: a :class:`~echobook.data.table.VideoTable`.

    Row ``i`` is patient ``patients[i]``: ``video(i)`` its ``view`` sequence (ED first), ``ef_percent`` the
    cfg's EF, ``qualities`` the view's ImageQuality. ``split`` keeps some splits (2019: TRAIN = training/,
    TEST = testing/; 2023: database_split's three). ``subgroups`` holds the 2019 ten folds when present.
    ``problems`` counts every quirk met (see the module doc); sequences stored ES first are reversed,
    with one warning for the folder.
    """

    def __init__(self, root: str | Path, view: str = "4CH", split: str | Sequence[str] | None = None):
        if view not in CAMUS_VIEWS:
            raise ValueError(f"view={view!r}: choose one of {CAMUS_VIEWS}")
        self.root, self.view = Path(root), view
        self.problems = Problems()
        self.release, patients = read_patients(self.root, self.problems)
        self.subgroups = read_subgroups_2019(self.root) if self.release == "2019" else {}
        self.chosen_splits = split_names(split)
        self.patients: list[CamusPatient] = [p for p in patients if p.split in self.chosen_splits]
        if self.problems[ED_AFTER_ES]:
            warnings.warn(f"{self.root}: {self.problems[ED_AFTER_ES]} sequence(s) stored with ED after ES "
                          f"(e.g. {', '.join(self.problems.examples[ED_AFTER_ES])}); read reversed so that "
                          "frame 0 is ED", stacklevel=2)

    def __len__(self) -> int:
        return len(self.patients)

    def views(self, view: str | None = None) -> list[CamusView]:
        return [p.views[view or self.view] for p in self.patients]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.patients]

    @property
    def splits(self) -> np.ndarray:
        return np.array([p.split for p in self.patients], dtype=str)

    @property
    def frame_counts(self) -> np.ndarray:
        return np.array([v.info.frame_count for v in self.views()], dtype=np.int64)

    @property
    def ef_percent(self) -> np.ndarray:
        return np.array([v.info.ef_percent for v in self.views()], dtype=np.float32)

    @property
    def fps(self) -> np.ndarray:
        """FrameRate of the cfg (2023); NaN where absent (the 2019 cfgs have none)."""
        return np.array([v.info.frame_rate for v in self.views()], dtype=np.float64)

    @property
    def qualities(self) -> np.ndarray:
        return np.array([v.info.quality for v in self.views()], dtype=str)

    @property
    def has_masks(self) -> np.ndarray:
        return np.array([v.has_masks for v in self.views()], dtype=bool)

    def video(self, index: int, stop: int | None = None) -> np.ndarray:
        """uint8 ``[T, H, W]`` half sequence of the chosen view, ED first (at most ``stop`` frames)."""
        return self.views()[index].sequence()[:stop]

    def subset(self, split: str | Sequence[str]) -> "CamusDataset":
        """The same folder restricted to other splits, without re-reading the cfgs."""
        splits = split_names(split)
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view.chosen_splits = splits
        view.patients = [p for p in self.patients if p.split in splits]
        return view

    def with_view(self, view: str) -> "CamusDataset":
        """The same patients, the other view's sequences."""
        if view not in CAMUS_VIEWS:
            raise ValueError(f"view={view!r}: choose one of {CAMUS_VIEWS}")
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.view = view
        return other

    def __repr__(self) -> str:
        return (f"CamusDataset({str(self.root)!r}, release={self.release}, view={self.view}, "
                f"patients={len(self)}, problems={sum(self.problems.counts.values())})")


def read_camus(root: str | Path, view: str = "4CH", split: str | Sequence[str] | None = None) -> CamusDataset:
    """Read a CAMUS folder of either release; see :class:`CamusDataset`."""
    return CamusDataset(root, view, split)


# --------------------------------------------------------------------------------------------- biplane volumes

def isotropic_mask(mask: np.ndarray, mm_per_pixel: tuple[float, float]) -> tuple[np.ndarray, float]:
    """A label mask resampled (nearest) to square pixels of the finer spacing, and that spacing in mm.

    CAMUS's spacing is anisotropic; its EF script resamples to isotropic before measuring (reference §2.5).
    """
    import cv2

    row_mm, col_mm = mm_per_pixel
    side_mm = min(row_mm, col_mm)
    if math.isclose(row_mm, col_mm, rel_tol=1e-6):
        return mask, side_mm
    height, width = mask.shape
    size = (max(1, round(width * col_mm / side_mm)), max(1, round(height * row_mm / side_mm)))
    return cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST), side_mm


def lv_tracing(mask: np.ndarray, mm_per_pixel: tuple[float, float]) -> tuple[np.ndarray, float]:
    """The LV cavity's tracing (apex, mitral plane, 20 chords) on an isotropic grid, and that grid's mm/pixel."""
    square, side_mm = isotropic_mask((np.asarray(mask) == LV_CAVITY).astype(np.uint8), mm_per_pixel)
    return mask_to_tracing(square), side_mm


def camus_biplane(patient: CamusPatient) -> dict[str, float]:
    """EDV, ESV (mL) and EF (%) of a patient by the biplane method of discs on its 2CH and 4CH label maps."""
    volumes = {}
    for instant in INSTANTS:
        traced = [lv_tracing(patient.views[v].mask(instant), patient.views[v].mm_per_pixel()) for v in CAMUS_VIEWS]
        (tracing_2ch, mm_2ch), (tracing_4ch, mm_4ch) = traced
        volumes[instant] = float(biplane_volume_ml(tracing_2ch, tracing_4ch, mm_2ch, mm_4ch))
    edv, esv = volumes["ED"], volumes["ES"]
    return {"edv_ml": edv, "esv_ml": esv, "ef_percent": 100.0 * (edv - esv) / edv}


# --------------------------------------------------------------------------------------------- checking

@dataclass
class CamusReport:
    """What :func:`check_camus` found: release, patients per split, EF and quality, problems, usability."""

    root: Path
    release: str = "?"
    split_counts: dict[str, int] = field(default_factory=dict)
    ef_stats: dict[str, float] = field(default_factory=dict)
    quality_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    masked_views: int = 0
    problems: Problems = field(default_factory=Problems)

    @property
    def usable(self) -> bool:
        return self.problems.usable and sum(self.split_counts.values()) > 0

    def as_dict(self) -> dict:
        return {"root": str(self.root), "release": self.release, "usable": self.usable,
                "split_counts": self.split_counts, "ef_stats": self.ef_stats,
                "quality_counts": self.quality_counts, "masked_views": self.masked_views,
                "problems": self.problems.as_dict(), "fatal": sorted(self.problems.fatal)}

    def __str__(self) -> str:
        lines = [f"CAMUS folder ({self.release} release): {self.root}"]
        for split in SPLITS:
            if self.split_counts.get(split):
                lines.append(f"  {split:<5} {self.split_counts[split]:>5} patients")
        stats = self.ef_stats
        if stats.get("count"):
            lines.append(f"  EF (4CH cfg) mean {stats['mean']:.1f} sd {stats['sd']:.1f} min {stats['min']:.1f} "
                         f"max {stats['max']:.1f} %, {stats['below_45']:.0%} below 45 %")
        for view, counts in self.quality_counts.items():
            lines.append(f"  {view} image quality: " + ", ".join(f"{q} {n}" for q, n in counts.items()))
        lines.append(f"  views with ED/ES label maps: {self.masked_views}")
        lines.append("problems found:" if self.problems else "problems found: none")
        lines += [f"  {line}" for line in self.problems.lines()]
        lines.append("usable: yes" if self.usable else "usable: NO")
        return "\n".join(lines)


def _check_sequences(patients: list[CamusPatient], problems: Problems) -> None:
    for patient in patients:
        for view in patient.views.values():
            label = view.path("sequence").name
            try:
                frames, _ = read_image(view.path("sequence"))
            except (CamusFormatError, FileNotFoundError, RuntimeError) as error:
                problems.add(f"unreadable sequence: {error}", 1, [label], fatal=True)
                continue
            problems.add(FRAME_COUNT_MISMATCH, int(len(frames) != view.info.frame_count), [label])


def check_camus(root: str | Path, *, open_files: bool = True) -> CamusReport:
    """Check a CAMUS folder without raising: counts, EF and quality statistics, every problem found.

    ``open_files`` reads every sequence (a ``.raw`` shorter than its header, a frame count that
    differs from NbFrame); without it only the cfgs and the files' presence are checked.
    """
    report = CamusReport(root=Path(root))
    try:
        report.release, patients = read_patients(root, report.problems)
    except (FileNotFoundError, CamusFormatError) as error:
        report.problems.add(str(error), 1, fatal=True)
        return report
    if open_files:
        _check_sequences(patients, report.problems)
    for split in SPLITS:
        report.split_counts[split] = sum(p.split == split for p in patients)
    ef = np.array([p.views["4CH"].info.ef_percent for p in patients], dtype=float)
    ef = ef[~np.isnan(ef)]
    if len(ef):
        report.ef_stats = {"count": len(ef), "mean": float(ef.mean()), "sd": float(ef.std(ddof=1)) if len(ef) > 1
                           else 0.0, "min": float(ef.min()), "max": float(ef.max()),
                           "below_45": float(np.mean(ef < 45))}
    for view in CAMUS_VIEWS:
        qualities = [p.views[view].info.quality for p in patients]
        report.quality_counts[view] = {q: qualities.count(q) for q in sorted(set(qualities), key=_quality_rank)}
    report.masked_views = sum(v.has_masks for p in patients for v in p.views.values())
    return report


def _quality_rank(quality: str) -> int:
    return QUALITIES.index(quality) if quality in QUALITIES else len(QUALITIES)


# --------------------------------------------------------------------------------------------- writing

def camus_synthetic_config(config=None):
    """The engine's config for CAMUS-like patients: CAMUS's quality proportions and EF spread (half below 45 %),
    a fixed frame rate; image size and frames from ``config`` (default the engine's)."""
    from echobook.data.synthetic import SyntheticConfig

    base = SyntheticConfig() if config is None else config
    return dataclasses.replace(base, quality_weights=CAMUS_QUALITY_WEIGHTS, ef_range=CAMUS_SYNTHETIC_EF_RANGE,
                               ef_percent=None, quality=None, view="A4C",
                               fps_range=(CAMUS_SYNTHETIC_FRAME_RATE, CAMUS_SYNTHETIC_FRAME_RATE))


def camus_splits(count: int, release: str) -> list[str]:
    """Each synthetic patient's split in CAMUS's proportions (2019: TRAIN/TEST 450/50; 2023: 400/50/50)."""
    if release == "2019":
        test = max(1, round(count * CAMUS_TEST_SHARE_2019)) if count >= 2 else 0
        labels = ["TRAIN"] * (count - test) + ["TEST"] * test
    else:
        val = max(1, round(count * CAMUS_SPLIT_SHARES_2023["VAL"])) if count >= 3 else 0
        test = max(1, round(count * CAMUS_SPLIT_SHARES_2023["TEST"])) if count >= 3 else 0
        labels = ["TRAIN"] * (count - val - test) + ["VAL"] * val + ["TEST"] * test
    return labels  # in patient order, as CAMUS numbers its testing patients last


def _cfg_text(info: dict[str, object]) -> str:
    return "".join(f"{key}: {value}\n" for key, value in info.items())


def _patient_cfg(video, volumes: dict[str, float], sex: str, age: int, release: str) -> str:
    frames = video.es_frame - video.ed_frame + 1
    info = {"ED": 1, "ES": frames, "NbFrame": frames, "Sex": sex, "Age": age, "ImageQuality": video.quality}
    if release == "2019":
        info.update(LVedv=f"{volumes['edv_ml']:.2f}", LVesv=f"{volumes['esv_ml']:.2f}",
                    LVef=f"{volumes['ef_percent']:.2f}")
    else:
        info.update(EF=f"{volumes['ef_percent']:.2f}", FrameRate=f"{video.fps:g}")
    return _cfg_text(info)


def _write_view(folder: Path, name: str, view: str, video, release: str, with_masks: bool) -> None:
    ed, es = video.ed_frame, video.es_frame
    spacing = (video.mm_per_pixel, video.mm_per_pixel)
    suffix = SUFFIX[release]
    half = video.frames[ed:es + 1]
    stem = f"{name}_{view}"
    write_image(folder / f"{stem}_ED{suffix}", video.frames[ed:ed + 1], spacing)
    write_image(folder / f"{stem}_ES{suffix}", video.frames[es:es + 1], spacing)
    sequence_name = "half_sequence" if release == "2023" else "sequence"
    write_image(folder / f"{stem}_{sequence_name}{suffix}", half, spacing)
    if with_masks:
        write_image(folder / f"{stem}_ED_gt{suffix}", video.labels[ed:ed + 1], spacing)
        write_image(folder / f"{stem}_ES_gt{suffix}", video.labels[es:es + 1], spacing)
        if release == "2023":
            write_image(folder / f"{stem}_half_sequence_gt{suffix}", video.labels[ed:es + 1], spacing)


def synthetic_patient(seed: int, index: int, config) -> dict[str, object]:
    """The 2CH and 4CH videos of synthetic patient ``index`` (one heart: forcing the view keeps the rest),
    the heart's volumes (the mean of both views' ground truth) and a sex and age."""
    from echobook.data.synthetic import make_video, rng_for

    videos = {"4CH": make_video(seed, index, dataclasses.replace(config, view="A4C")),
              "2CH": make_video(seed, index, dataclasses.replace(config, view="A2C"))}
    edv = float(np.mean([v.edv_ml for v in videos.values()]))
    esv = float(np.mean([v.esv_ml for v in videos.values()]))
    # sex and age from a stream of their own, so they never shift the heart's draws
    extra = rng_for(seed + 7919, index)
    sex, age = ("F", "M")[int(extra.uniform() < 0.66)], int(extra.integers(20, 90))
    return {"videos": videos, "volumes": {"edv_ml": edv, "esv_ml": esv, "ef_percent": 100.0 * (edv - esv) / edv},
            "sex": sex, "age": age}


def _prepare_output(out_dir: Path, overwrite: bool) -> None:
    prepare_output_folder(out_dir, overwrite, (TRAINING_DIR, TESTING_DIR, SUBGROUPS_DIR, NIFTI_DIR, SPLIT_DIR), "CAMUS")


def subgroup_folds(qualities: Sequence[str], ef_percent: Sequence[float], folds: int = SUBGROUP_FOLDS) -> list[int]:
    """Fold (0-based) of each patient, balanced in image quality and EF as CAMUS's ten subgroups are: patients
    sorted by quality, then EF, are dealt to the folds in turn."""
    order = sorted(range(len(qualities)), key=lambda i: (_quality_rank(qualities[i]), float(ef_percent[i])))
    fold_of = [0] * len(qualities)
    for position, patient in enumerate(order):
        fold_of[patient] = position % folds
    return fold_of


def _write_subgroups(out_dir: Path, names: list[str], fold_of: list[int]) -> None:
    folder = out_dir / SUBGROUPS_DIR
    folder.mkdir(exist_ok=True)
    folds = max(fold_of) + 1
    for k in range(SUBGROUP_FOLDS):
        testing = [n for n, f in zip(names, fold_of) if f == k % folds]
        validation = [n for n, f in zip(names, fold_of) if f == (k + 1) % folds and folds > 1]
        training = [n for n in names if n not in testing and n not in validation]
        for role, members in zip(SUBGROUP_ROLES, (training, validation, testing)):
            (folder / f"subGroup{k + 1}_{role}.txt").write_text("".join(f"{n}\n" for n in members))


def write_camus(out_dir: str | Path, patients: int, seed: int = 0, config=None, *, release: str = "2019",
                overwrite: bool = False, progress: bool = False) -> Path:
    """Write ``patients`` synthetic patients in CAMUS's ``release`` layout; returns ``out_dir``.

    Each patient is one synthetic heart seen in both views (:func:`synthetic_patient`); the half
    sequence runs from its ED to its ES frame, so the cfg says ``ED: 1`` and ``ES: NbFrame``. The cfg's
    volumes are the heart's ground truth (CAMUS's are the biplane rule on the experts' contours).
    ``config``: the engine's (image size, frames); CAMUS's quality proportions and EF spread are
    applied on top (:func:`camus_synthetic_config`). The same arguments give the same files.
    """
    if release not in RELEASES:
        raise ValueError(f"release={release!r}: choose one of {RELEASES}")
    if patients < 1:
        raise ValueError(f"patients={patients}: need at least one")
    out_dir = Path(out_dir)
    _prepare_output(out_dir, overwrite)
    config = camus_synthetic_config(config)
    splits = camus_splits(patients, release)
    names, qualities, efs = [], [], []
    for index in range(patients):
        if progress and index % 10 == 0:
            print(f"synth camus: patients {index + 1}-{min(index + 10, patients)} of {patients}", flush=True)
        name = f"patient{index + 1:04d}"
        made = synthetic_patient(seed, index, config)
        parent = out_dir / (NIFTI_DIR if release == "2023" else TRAINING_DIR if splits[index] == "TRAIN"
                            else TESTING_DIR)
        folder = parent / name
        folder.mkdir(parents=True, exist_ok=True)
        with_masks = release == "2023" or splits[index] == "TRAIN"
        for view, video in made["videos"].items():
            _write_view(folder, name, view, video, release, with_masks)
            (folder / f"Info_{view}.cfg").write_text(
                _patient_cfg(video, made["volumes"], made["sex"], made["age"], release))
        names.append(name)
        qualities.append(made["videos"]["4CH"].quality)
        efs.append(made["volumes"]["ef_percent"])
    if release == "2023":
        (out_dir / SPLIT_DIR).mkdir(exist_ok=True)
        for split, file_name in SPLIT_FILES_2023.items():
            members = [n for n, s in zip(names, splits) if s == split]
            (out_dir / SPLIT_DIR / file_name).write_text("".join(f"{n}\n" for n in members))
    else:
        training = [i for i, s in enumerate(splits) if s == "TRAIN"]
        fold_of = subgroup_folds([qualities[i] for i in training], [efs[i] for i in training])
        _write_subgroups(out_dir, [names[i] for i in training], fold_of)
    return out_dir
