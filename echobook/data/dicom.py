"""DICOM ultrasound cine loops: read one recording (frames, frame rate, scan sector, pixel spacing), write one.

A clinical echo arrives as a multi-frame DICOM (SOP class Ultrasound Multi-frame Image Storage). What a
model needs from it, and where each piece is in the file (reference: echo-toolkits-and-dicom.md, sec. 3):

- the frames, decoded by pydicom (JPEG baseline through Pillow, which every install has; other
  compressed syntaxes need a plugin, and their absence is an error that names the syntax);
- colour: JPEG clips labelled ``RGB`` whose stream is YCbCr (a JFIF marker) are decoded as
  ``YBR_FULL_422`` by pydicom (DICOM CP 156); the recording's ``notes`` say so. Frames become gray;
- the frame rate: ``CineRate`` (0018,0040), else ``FrameTime`` (0018,1063, ms per frame), else
  ``RecommendedDisplayFrameRate`` (0008,2144);
- the scan sector: the 2-D tissue region of ``SequenceOfUltrasoundRegions`` (0018,6011) gives its box
  and ``PhysicalDeltaX/Y`` (cm per pixel, so volumes come out in mL); the fan inside the box is found
  from the pixels that move. Without the tags the fan is found from the pixels alone (the largest
  moving region, opened so that a thin ECG trace falls away, then its convex hull; with the tags the
  narrow apex the opening removes is added back). Everything outside the sector (burned-in text, the
  ECG strip, calipers) is set to 0 and never reaches a model; ``masked_fraction`` says how much was
  removed. A model's frames are cut from the region's box, or without tags from a square about the fan
  (``image_box``).

What cannot be a cine loop of the heart is refused with a :class:`DicomReadError` naming the file and the
tag: not a DICOM file, no Pixel Data, a still image, a spectral Doppler strip, a syntax without a decoder.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

ULTRASOUND_MULTIFRAME_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.3.1"
# SequenceOfUltrasoundRegions codes (DICOM PS3.3 C.8.5.5): spatial format 1 = 2-D, data type 1 = tissue,
# 3 = pulsed-wave spectral Doppler, 4 = continuous-wave spectral Doppler; physical unit 3 = cm.
REGION_FORMAT_2D = 1
REGION_DATA_TISSUE = 1
REGION_DATA_SPECTRAL_DOPPLER = (3, 4)
UNIT_CM = 3
MM_PER_CM = 10.0
# A pixel belongs to the fan when its gray level changes over the loop by more than this (speckle and wall
# motion do; burned-in text and the black border do not).
MOTION_THRESHOLD_GRAY = 4.0
OPENING_FRACTION = 0.02  # the opening's kernel, as a share of the image's shorter side: removes thin traces
NEAR_FRACTION = 0.2  # moving pixels this close to the opened fan (share of the shorter side) belong to it: its apex


class DicomReadError(ValueError):
    """A DICOM file that cannot be read as an echo cine loop; the message names the file and the tag."""


@dataclass
class DicomRecording:
    """One DICOM cine loop, ready for the book's preprocessing. Pixel coordinates: X = column, Y = row."""

    path: Path
    frames: np.ndarray  # uint8 gray [T, H, W], zero outside the sector
    fps: float
    fps_source: str  # the tag the frame rate came from
    sector: np.ndarray  # bool [H, W]
    sector_source: str  # "region tags" or "pixels"
    sector_box: tuple[int, int, int, int]  # (x0, y0, x1, y1), inclusive, of the sector
    mm_per_pixel: tuple[float, float] | None  # (x, y) from PhysicalDeltaX/Y; None when the tags are absent
    masked_fraction: float  # share of the image's pixels outside the sector (set to 0)
    photometric: str  # PhotometricInterpretation as stored
    notes: list[str] = field(default_factory=list)  # what was fixed on the way, once each
    # (x0, y0, x1, y1), inclusive: what a model's frames are cut from. The region's box when the tags give one (the
    # scanner's whole image, as a training video is), else the sector's box grown to a square (EchoNet-Dynamic's
    # videos are square crops of the sector), so that the heart keeps the proportions it had in training
    image_box: tuple[int, int, int, int] | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    def cropped(self) -> np.ndarray:
        """The frames cut to :attr:`image_box` (the sector's box if unset): what a model's preprocessing resizes."""
        x0, y0, x1, y1 = self.image_box or self.sector_box
        return self.frames[:, y0:y1 + 1, x0:x1 + 1]


# --------------------------------------------------------------------------------------------- reading
def _dataset(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such DICOM file")
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError as error:
        raise DicomReadError(f"{path}: not a DICOM file ({error})") from error
    except (OSError, EOFError, ValueError) as error:
        raise DicomReadError(f"{path}: the DICOM file is damaged or truncated ({error})") from error


def _require_cine(ds, path: Path) -> None:
    if "PixelData" not in ds:
        raise DicomReadError(f"{path}: no Pixel Data element (7FE0,0010): a report or structured document, "
                             "not an image")
    if _is_spectral_doppler(ds):
        raise DicomReadError(f"{path}: a spectral Doppler strip (SequenceOfUltrasoundRegions (0018,6011) has "
                             "no 2-D tissue region), not a B-mode cine loop")
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames < 2:
        raise DicomReadError(f"{path}: a still image (NumberOfFrames (0028,0008) = {frames}), not a cine loop")


def ultrasound_regions(ds) -> list:
    return list(getattr(ds, "SequenceOfUltrasoundRegions", []) or [])


def _is_spectral_doppler(ds) -> bool:
    regions = ultrasound_regions(ds)
    kinds = {int(getattr(r, "RegionDataType", 0)) for r in regions}
    return bool(regions) and bool(kinds & set(REGION_DATA_SPECTRAL_DOPPLER)) and tissue_region(ds) is None


def tissue_region(ds):
    """The first 2-D tissue region of SequenceOfUltrasoundRegions, or None."""
    for region in ultrasound_regions(ds):
        if (int(getattr(region, "RegionSpatialFormat", 0)) == REGION_FORMAT_2D
                and int(getattr(region, "RegionDataType", 0)) == REGION_DATA_TISSUE):
            return region
    return None


def frame_rate_fps(ds, path: Path) -> tuple[float, str]:
    """Frames per second and the tag it came from; a DicomReadError naming the tags when none is usable."""
    rate = getattr(ds, "CineRate", None)
    if rate not in (None, "") and float(rate) > 0:
        return float(rate), "CineRate (0018,0040)"
    frame_time_ms = getattr(ds, "FrameTime", None)
    if frame_time_ms not in (None, "") and float(frame_time_ms) > 0:
        return 1000.0 / float(frame_time_ms), "FrameTime (0018,1063)"
    display = getattr(ds, "RecommendedDisplayFrameRate", None)
    if display not in (None, "") and float(display) > 0:
        return float(display), "RecommendedDisplayFrameRate (0008,2144)"
    raise DicomReadError(f"{path}: no frame rate: CineRate (0018,0040), FrameTime (0018,1063) and "
                         "RecommendedDisplayFrameRate (0008,2144) are all absent or zero; give fps= yourself")


def _decoded_pixels(ds, path: Path, notes: list[str]) -> np.ndarray:
    syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pixels = ds.pixel_array
        except Exception as error:  # pydicom raises RuntimeError/NotImplementedError/ValueError by plugin
            name = getattr(syntax, "name", str(syntax))
            raise DicomReadError(f"{path}: Pixel Data (7FE0,0010) cannot be decoded (TransferSyntaxUID (0002,0010) "
                                 f"= {syntax}, {name}): {str(error).splitlines()[0][:200]}; install a decoder "
                                 "for this syntax (pylibjpeg with its plugins, or python-gdcm)") from error
    for warning in caught:
        text = str(warning.message)
        if "Photometric Interpretation" in text and text not in notes:
            notes.append(f"colour: {text} (decoded as the stream says, DICOM CP 156)")
    return np.asarray(pixels)


def to_gray(pixels: np.ndarray, photometric: str, samples_per_pixel: int) -> np.ndarray:
    """uint8 gray ``[T, H, W]`` from decoded pixels ``[T, H, W]`` or ``[T, H, W, 3]`` (RGB after pydicom)."""
    if samples_per_pixel == 3 or pixels.ndim == 4:
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601 luma, as OpenCV's RGB2GRAY
        gray = pixels.astype(np.float32) @ weights
    else:
        gray = pixels.astype(np.float32)
        if photometric == "MONOCHROME1":  # 0 is white
            gray = gray.max() - gray
    if gray.max() > 255:  # more than 8 bits stored: scale to 8
        gray = gray * (255.0 / gray.max())
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


def region_box(region, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a region, clipped to the image."""
    height, width = shape
    x0 = int(np.clip(int(region.RegionLocationMinX0), 0, width - 1))
    y0 = int(np.clip(int(region.RegionLocationMinY0), 0, height - 1))
    x1 = int(np.clip(int(region.RegionLocationMaxX1), x0, width - 1))
    y1 = int(np.clip(int(region.RegionLocationMaxY1), y0, height - 1))
    return x0, y0, x1, y1


def region_mm_per_pixel(region) -> tuple[float, float] | None:
    """(x, y) millimetres per pixel from PhysicalDeltaX/Y when both directions are in cm."""
    units = (int(getattr(region, "PhysicalUnitsXDirection", 0)), int(getattr(region, "PhysicalUnitsYDirection", 0)))
    if units != (UNIT_CM, UNIT_CM):
        return None
    dx, dy = float(region.PhysicalDeltaX), float(region.PhysicalDeltaY)
    if dx <= 0 or dy <= 0:
        return None
    return abs(dx) * MM_PER_CM, abs(dy) * MM_PER_CM


def moving_sector(frames: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """bool ``[H, W]``: the scan fan, found from the pixels that change over the loop (inside ``box`` if given).

    The moving pixels are opened (a thin ECG trace or a blinking cursor falls away) and the largest connected
    region of what stays is the fan, filled to its convex hull (dark blood pools inside the fan move little but
    belong to it). The opening also eats the fan's narrow apex: inside a region's ``box``, which holds no ECG, the
    moving pixels before opening that are connected to that region and near it (within ``NEAR_FRACTION`` of the
    image's shorter side) are added back. Without a box they are not (an ECG drawn right under the fan would be
    connected to it), and the fan found may miss a few rows at its apex.
    """
    motion = (frames.astype(np.float32).std(axis=0) > MOTION_THRESHOLD_GRAY).astype(np.uint8)
    if box is not None:
        x0, y0, x1, y1 = box
        inside = np.zeros_like(motion)
        inside[y0:y1 + 1, x0:x1 + 1] = 1
        motion &= inside
    side = max(3, int(round(OPENING_FRACTION * min(motion.shape))) | 1)
    opened = cv2.morphologyEx(motion, cv2.MORPH_OPEN, np.ones((side, side), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    if count < 2:
        return np.zeros(motion.shape, bool)
    fan = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if box is not None:
        fan |= _apex_of(motion, fan)
    hull = cv2.convexHull(cv2.findNonZero(fan.astype(np.uint8)))
    sector = np.zeros(motion.shape, np.uint8)
    cv2.fillConvexPoly(sector, hull, 1)
    return sector.astype(bool)


def _apex_of(motion: np.ndarray, fan: np.ndarray) -> np.ndarray:
    """bool ``[H, W]``: moving pixels connected to ``fan`` before the opening and near it (``NEAR_FRACTION``)."""
    _, raw_labels = cv2.connectedComponents(motion, connectivity=8)
    connected = np.isin(raw_labels, np.setdiff1d(np.unique(raw_labels[fan]), [0]))
    radius = max(1, int(round(NEAR_FRACTION * min(motion.shape))))
    near = cv2.dilate(fan.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2))
    return connected & (near > 0)


def square_box(box: tuple[int, int, int, int], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """``box`` (x0, y0, x1, y1) grown to a square about its centre, moved (not cut) to stay in an image of
    ``shape`` (height, width) where it fits, else cut to it."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) + 1
    starts = []
    for low, high, limit in ((x0, x1, shape[1]), (y0, y1, shape[0])):
        start = (low + high + 1) // 2 - side // 2
        starts.append(int(np.clip(start, 0, max(limit - side, 0))))
    return (starts[0], starts[1], min(starts[0] + side, shape[1]) - 1, min(starts[1] + side, shape[0]) - 1)


def _box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def read_dicom(path: str | Path, *, fps: float | None = None) -> DicomRecording:
    """Read one DICOM cine loop: gray frames with everything outside the scan sector set to 0.

    ``fps`` overrides the file's frame rate (needed only when the file has none).
    """
    path = Path(path)
    ds = _dataset(path)
    _require_cine(ds, path)
    notes: list[str] = []
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    pixels = _decoded_pixels(ds, path, notes)
    gray = to_gray(pixels, photometric, int(getattr(ds, "SamplesPerPixel", 1)))
    if gray.ndim != 3:
        raise DicomReadError(f"{path}: Pixel Data decodes to shape {pixels.shape}, not frames [T, H, W]")
    rate, rate_source = (float(fps), "given") if fps else frame_rate_fps(ds, path)
    region = tissue_region(ds)
    box = region_box(region, gray.shape[1:]) if region is not None else None
    sector = moving_sector(gray, box)
    if not sector.any():
        where = "inside the tissue region's box" if box else "anywhere"
        raise DicomReadError(f"{path}: no moving scan sector found {where} (is it a still loop, or all black?)")
    return DicomRecording(
        path=path, frames=np.where(sector, gray, 0).astype(np.uint8), fps=rate, fps_source=rate_source,
        sector=sector, sector_source="region tags" if region is not None else "pixels",
        sector_box=_box_of(sector), mm_per_pixel=region_mm_per_pixel(region) if region is not None else None,
        masked_fraction=float(1 - sector.mean()), photometric=photometric, notes=notes,
        image_box=box if box is not None else square_box(_box_of(sector), sector.shape))


# --------------------------------------------------------------------------------------------- writing
# MONOCHROME2 and RGB uncompressed; YBR_FULL_422: JPEG baseline labelled as it is; "RGB as YBR": the same JPEG
# YCbCr stream labelled RGB, as some scanners write it (the CP 156 case)
COLOURS = ("MONOCHROME2", "RGB", "YBR_FULL_422", "RGB as YBR")


def _jpeg_frames(frames_rgb: np.ndarray) -> list[bytes]:
    """Baseline JPEG per frame (OpenCV writes JFIF, i.e. YCbCr 4:2:0 inside), quality 95."""
    frames = []
    for frame in frames_rgb:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise OSError("OpenCV could not encode a JPEG frame")
        frames.append(data.tobytes())
    return frames


def _region_item(box: tuple[int, int, int, int], mm_per_pixel: tuple[float, float] | None):
    from pydicom.dataset import Dataset

    region = Dataset()
    region.RegionSpatialFormat = REGION_FORMAT_2D
    region.RegionDataType = REGION_DATA_TISSUE
    region.RegionFlags = 0
    region.RegionLocationMinX0, region.RegionLocationMinY0, region.RegionLocationMaxX1, region.RegionLocationMaxY1 = box
    units = UNIT_CM if mm_per_pixel else 0  # 0: none
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = units
    dx, dy = (mm_per_pixel[0] / MM_PER_CM, mm_per_pixel[1] / MM_PER_CM) if mm_per_pixel else (0.0, 0.0)
    region.PhysicalDeltaX, region.PhysicalDeltaY = dx, dy
    return region


def write_dicom(path: str | Path, frames: np.ndarray, fps: float, *, colour: str = "MONOCHROME2",
                region: tuple[int, int, int, int] | None = None, mm_per_pixel: tuple[float, float] | None = None,
                rate_tag: str = "CineRate", patient_name: str = "SYNTHETIC^HEART") -> Path:
    """Write uint8 ``[T, H, W]`` gray or ``[T, H, W, 3]`` RGB frames as an Ultrasound Multi-frame Image.

    ``colour``: one of :data:`COLOURS` (gray frames are repeated into three channels for the colour ones).
    ``region``: (x0, y0, x1, y1) of the 2-D tissue region, with ``mm_per_pixel`` its
    spacing; None writes no SequenceOfUltrasoundRegions. ``rate_tag``: "CineRate", "FrameTime" or None.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[-1] != 3):
        raise ValueError(f"{path}: frames must be uint8 [T, H, W] or [T, H, W, 3]; got {frames.dtype} {frames.shape}")
    if colour not in COLOURS:
        raise ValueError(f"colour={colour!r}: choose from {COLOURS}")
    if colour == "MONOCHROME2" and frames.ndim == 4:
        raise ValueError(f"{path}: MONOCHROME2 takes gray frames [T, H, W]; got {frames.shape}")
    path = Path(path)
    rgb = frames if frames.ndim == 4 else np.repeat(frames[..., None], 3, axis=-1)
    jpeg = colour in ("YBR_FULL_422", "RGB as YBR")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ULTRASOUND_MULTIFRAME_SOP_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = ULTRASOUND_MULTIFRAME_SOP_CLASS, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName = "US", patient_name
    ds.Rows, ds.Columns = frames.shape[1:3]
    ds.NumberOfFrames = frames.shape[0]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if rate_tag == "CineRate":
        ds.CineRate = int(round(fps))
    elif rate_tag == "FrameTime":
        ds.FrameTime = round(1000.0 / fps, 3)
    if region is not None:
        ds.SequenceOfUltrasoundRegions = [_region_item(region, mm_per_pixel)]
    if colour == "MONOCHROME2":
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.PixelData = frames.tobytes()
    else:
        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
        ds.PhotometricInterpretation = "YBR_FULL_422" if colour == "YBR_FULL_422" else "RGB"
        if jpeg:
            ds.PixelData = encapsulate(_jpeg_frames(rgb))
            ds["PixelData"].VR = "OB"
        else:
            ds.PixelData = np.ascontiguousarray(rgb).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


# --------------------------------------------------------------------------------------------- synthetic DICOMs
TRUTH_CSV = "truth.csv"  # what `echobook synth dicom` drew: one row per file (EF, volumes, ED/ES, spacing, rate)


def synth_dicom(out_dir: str | Path, videos: int = 4, seed: int = 0, config=None, *, colour: str = "RGB as YBR",
                region_tags: bool = True, rate_tag: str = "CineRate", overwrite: bool = False,
                progress: bool = False) -> Path:
    """Write ``videos`` synthetic cine loops as scanners export them: ``<out_dir>/<name>.dcm`` and ``truth.csv``.

    Each is the engine's video ``(seed, i)`` on a wider screen with a burned-in caption and an ECG strip outside
    the sector (:func:`echobook.data.synthetic.screen.compose_frames`, the ECG green in colour files), stored as
    ``colour`` (:data:`COLOURS`), with a SequenceOfUltrasoundRegions giving the sector's box and the heart's
    spacing when ``region_tags`` (else the reader must find the sector from the pixels and knows no spacing), and
    the frame rate in ``rate_tag`` ("CineRate" or "FrameTime"). Same arguments, same files (but the UIDs).
    """
    import pandas as pd

    from echobook.data.folders import prepare_output_folder
    from echobook.data.synthetic import SyntheticConfig, make_video
    from echobook.data.synthetic.screen import compose_frames, sector_region

    if videos < 1:
        raise ValueError(f"videos={videos}: need at least one")
    if colour not in COLOURS:
        raise ValueError(f"colour={colour!r}: choose from {COLOURS}")
    if rate_tag not in ("CineRate", "FrameTime"):
        raise ValueError(f"rate_tag={rate_tag!r}: choose CineRate or FrameTime")
    out_dir = prepare_output_folder(out_dir, overwrite, ("*.dcm", TRUTH_CSV), "synthetic DICOM")
    config = config or SyntheticConfig()
    rows = []
    for index in range(videos):
        if progress:
            print(f"synth dicom: {index + 1} of {videos}", flush=True)
        video = make_video(seed, index, config)
        name = f"synthetic_{seed}_{index:03d}"
        frames, _ = compose_frames(video, name, rgb=colour != "MONOCHROME2")
        region = sector_region(video.frames.shape[1]) if region_tags else None
        write_dicom(out_dir / f"{name}.dcm", frames, video.fps, colour=colour, region=region,
                    mm_per_pixel=(video.mm_per_pixel,) * 2 if region_tags else None, rate_tag=rate_tag,
                    patient_name=f"SYNTHETIC^{name}")
        rows.append({"name": name, "file": f"{name}.dcm", "ef_percent": video.ef_percent, "edv_ml": video.edv_ml,
                     "esv_ml": video.esv_ml, "ed_frame": video.ed_frame, "es_frame": video.es_frame,
                     "heart_rate_bpm": video.heart_rate_bpm, "fps": video.fps, "frames": video.num_frames,
                     "mm_per_pixel": video.mm_per_pixel, "colour": colour, "region_tags": region_tags})
    pd.DataFrame(rows).to_csv(out_dir / TRUTH_CSV, index=False)
    return out_dir
