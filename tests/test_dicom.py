"""DICOM cine loops (echobook.data.dicom): frames, frame rate, sector, spacing, colour labels, bad files."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from echobook.data.dicom import COLOURS, DicomReadError, read_dicom, write_dicom  # noqa: E402
from echobook.data.synthetic import SyntheticConfig, make_video  # noqa: E402

FPS = 30.0
MM_PER_PIXEL = (0.3, 0.3)
TOP, LEFT = 8, 24  # where the 48-pixel sector sits in the 72 x 96 screen


@pytest.fixture(scope="module")
def screen():
    """A synthetic echo on a wider screen: burned-in text top left and a green ECG trace with a sweeping cursor
    below the sector, as a scanner exports them. Returns RGB frames, the true sector and the heart's frames."""
    video = make_video(3, 0, SyntheticConfig(image_size=48, frames=12))
    frames = video.frames
    count, size = frames.shape[0], frames.shape[1]
    rgb = np.zeros((count, 72, 96, 3), np.uint8)
    rgb[:, TOP:TOP + size, LEFT:LEFT + size] = frames[..., None]
    xs = np.arange(4, 92)
    ys = (64 - 4 * np.exp(-((xs % 30) - 15) ** 2 / 4.0)).astype(np.int32)
    for t in range(count):
        cv2.putText(rgb[t], "ID 42", (1, 7), cv2.FONT_HERSHEY_PLAIN, 0.5, (255, 255, 255), 1)
        cv2.polylines(rgb[t], [np.stack([xs, ys], 1)], False, (0, 200, 0), 1)
        cv2.line(rgb[t], (4 + 7 * t, 58), (4 + 7 * t, 68), (255, 255, 0), 1)  # the sweep cursor moves
    sector = np.zeros((72, 96), bool)
    sector[TOP:TOP + size, LEFT:LEFT + size] = frames.std(axis=0) > 0
    return rgb, sector, frames


def write(tmp_path, rgb, colour, **kwargs):
    frames = rgb if colour != "MONOCHROME2" else cv2.cvtColor(rgb.reshape(-1, 96, 3), cv2.COLOR_RGB2GRAY).reshape(rgb.shape[:3])
    return write_dicom(tmp_path / f"{colour.replace(' ', '_')}.dcm", frames, FPS, colour=colour, **kwargs)


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("tags", [True, False], ids=["region tags", "no tags"])
@pytest.mark.parametrize("colour", COLOURS)
def test_frames_rate_sector_and_spacing(tmp_path, screen, colour, tags):
    rgb, true_sector, heart = screen
    size = heart.shape[1]
    region = (LEFT, TOP, LEFT + size - 1, TOP + size - 1) if tags else None
    path = write(tmp_path, rgb, colour, region=region, mm_per_pixel=MM_PER_PIXEL if tags else None)
    recording = read_dicom(path)
    assert recording.num_frames == len(heart) and recording.fps == pytest.approx(FPS)
    assert recording.sector_source == ("region tags" if tags else "pixels")
    assert recording.mm_per_pixel == (pytest.approx(MM_PER_PIXEL) if tags else None)
    assert overlap(recording.sector, true_sector) > 0.9
    outside = ~recording.sector
    assert (recording.frames[:, outside] == 0).all()
    assert not recording.sector[:TOP].any() and not recording.sector[TOP + size:].any()  # text and ECG masked
    assert recording.masked_fraction > 0.5
    tolerance = 0 if colour in ("MONOCHROME2", "RGB") else 6  # JPEG
    inside = recording.sector & true_sector
    gray = recording.frames[:, TOP:TOP + size, LEFT:LEFT + size]
    assert np.abs(gray.astype(int) - heart)[:, inside[TOP:TOP + size, LEFT:LEFT + size]].mean() <= tolerance
    # the frames a model gets: the region's box with the tags, else the sector's box grown to a square
    sector_height = np.ptp(np.flatnonzero(recording.sector.any(1))) + 1
    sector_width = np.ptp(np.flatnonzero(recording.sector.any(0))) + 1
    expected = (size, size) if tags else (max(sector_height, sector_width),) * 2
    assert recording.cropped().shape[1:] == expected


def test_jpeg_labelled_rgb_is_decoded_as_ycbcr_and_said_so(tmp_path, screen):
    rgb, _, _ = screen
    path = write(tmp_path, rgb, "RGB as YBR")
    assert pydicom.dcmread(path).PhotometricInterpretation == "RGB"
    recording = read_dicom(path)
    assert any("CP 156" in note for note in recording.notes)
    # the naive decoding (the stream's Y, Cb, Cr read as R, G, B) is what makes clips green: far from the truth
    raw = pydicom.pixels.pixel_array(pydicom.dcmread(path), raw=True)
    assert np.abs(raw[..., 1].astype(int) - rgb[..., 1]).mean() > 20
    labelled = read_dicom(write(tmp_path, rgb, "YBR_FULL_422"))
    assert not labelled.notes
    np.testing.assert_array_equal(recording.frames, labelled.frames)


def test_frame_time_is_read_when_cine_rate_is_absent(tmp_path, screen):
    rgb, _, _ = screen
    path = write(tmp_path, rgb, "MONOCHROME2", rate_tag="FrameTime")
    recording = read_dicom(path)
    assert recording.fps == pytest.approx(FPS, rel=1e-3) and "FrameTime" in recording.fps_source
    no_rate = write(tmp_path, rgb, "RGB", rate_tag=None)
    with pytest.raises(DicomReadError, match=r"RGB\.dcm.*CineRate \(0018,0040\)"):
        read_dicom(no_rate)
    assert read_dicom(no_rate, fps=25).fps == 25


def test_what_is_not_a_cine_loop_is_refused_by_name_and_tag(tmp_path, screen):
    rgb, _, _ = screen
    gray = rgb[..., 1]
    still = write_dicom(tmp_path / "still.dcm", gray[:1], FPS)
    with pytest.raises(DicomReadError, match=r"still\.dcm.*NumberOfFrames \(0028,0008\) = 1"):
        read_dicom(still)

    ds = pydicom.dcmread(write_dicom(tmp_path / "doppler.dcm", gray, FPS, region=(0, 0, 95, 71)))
    ds.SequenceOfUltrasoundRegions[0].RegionDataType = 3  # pulsed-wave spectral Doppler
    ds.SequenceOfUltrasoundRegions[0].RegionSpatialFormat = 3
    ds.save_as(tmp_path / "doppler.dcm")
    with pytest.raises(DicomReadError, match=r"doppler\.dcm.*spectral Doppler.*\(0018,6011\)"):
        read_dicom(tmp_path / "doppler.dcm")

    ds = pydicom.dcmread(write_dicom(tmp_path / "nopixels.dcm", gray, FPS))
    del ds.PixelData
    ds.save_as(tmp_path / "nopixels.dcm")
    with pytest.raises(DicomReadError, match=r"nopixels\.dcm.*\(7FE0,0010\)"):
        read_dicom(tmp_path / "nopixels.dcm")

    truncated = write_dicom(tmp_path / "truncated.dcm", gray, FPS)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    with pytest.raises(DicomReadError, match=r"truncated\.dcm"):
        read_dicom(truncated)

    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DicomReadError, match=r"notes\.txt.*not a DICOM file"):
        read_dicom(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match="nowhere.dcm"):
        read_dicom(tmp_path / "nowhere.dcm")


def test_a_syntax_without_a_decoder_names_the_transfer_syntax(tmp_path, screen, monkeypatch):
    rgb, _, _ = screen
    path = write(tmp_path, rgb, "YBR_FULL_422")

    def no_decoder(self):
        raise RuntimeError("Unable to decode the pixel data: no plugin available for JPEG Baseline (Process 1)")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoder))
    with pytest.raises(DicomReadError, match=r"YBR_FULL_422\.dcm.*TransferSyntaxUID \(0002,0010\).*1\.2\.840\.10008\.1\.2\.4\.50"):
        read_dicom(path)


# --------------------------------------------------------------------------------------------- echobook synth dicom
@pytest.mark.parametrize("colour,tags", [("RGB as YBR", True), ("YBR_FULL_422", False), ("RGB", True),
                                         ("MONOCHROME2", False)])
def test_synth_dicom_files_read_back_with_sector_spacing_rate_and_the_screen_masked(tmp_path, colour, tags):
    import pandas as pd

    from echobook.cli import main
    from echobook.config import get_preset
    from echobook.data.dicom import TRUTH_CSV
    from echobook.data.synthetic.screen import canvas_geometry, sector_region

    args = ["synth", "dicom", str(tmp_path / "out"), "--videos", "2", "--preset", "smoke", "--colour", colour,
            "--rate-tag", "FrameTime" if tags else "CineRate", "--quiet"]
    assert main(args + ([] if tags else ["--no-region-tags"])) == 0
    truth = pd.read_csv(tmp_path / "out" / TRUTH_CSV)
    sector_px = get_preset("smoke").image_size  # the engine's sector at --preset smoke
    assert len(truth) == 2 and truth["ef_percent"].between(5, 95).all()
    for row in truth.itertuples():
        path = tmp_path / "out" / row.file
        raw = pydicom.dcmread(path)
        assert raw.PhotometricInterpretation == {"RGB as YBR": "RGB"}.get(colour, colour)
        recording = read_dicom(path)
        height, width, _, _ = canvas_geometry(sector_px)
        assert recording.frames.shape[1:] == (height, width)
        x0, y0, x1, y1 = sector_region(sector_px)
        assert recording.num_frames == row.frames
        assert recording.fps == pytest.approx(row.fps, rel=0.02)
        assert recording.sector_source == ("region tags" if tags else "pixels")
        assert recording.mm_per_pixel == (pytest.approx((row.mm_per_pixel,) * 2, rel=1e-4) if tags else None)
        box = recording.sector_box  # the fan lies inside the square the region tags name
        assert x0 <= box[0] and y0 <= box[1] and box[2] <= x1 and box[3] <= y1
        assert (box[2] - box[0]) > 0.7 * (x1 - x0)
        if tags:  # the fan's narrow apex, near the top of the region, is kept
            assert box[1] - y0 <= 0.15 * (y1 - y0)
        image_box = recording.image_box  # the region's square with the tags; a square about the fan without
        assert image_box == (x0, y0, x1, y1) if tags else image_box[2] - image_box[0] == image_box[3] - image_box[1]
        # the caption (above the sector) and the ECG (below) were in the file, and are 0 after reading
        gray = raw.pixel_array if raw.SamplesPerPixel == 1 else raw.pixel_array.mean(-1)
        assert gray[:, :y0].max() > 100 and gray[:, y1 + 1:].max() > 100
        if colour != "MONOCHROME2":  # the ECG is drawn green: decoded in the right colours, it stays green
            strip = raw.pixel_array[:, y1 + 1:].reshape(-1, 3).astype(int)
            red, green, blue = strip[strip[:, 1].argmax()]
            assert green > red + 40 and green > blue + 40  # read as RGB, YCbCr would be red-brown
        assert (recording.frames[:, ~recording.sector] == 0).all()
        assert recording.frames[:, :y0].max() == 0 and recording.frames[:, y1 + 1:].max() == 0
        assert recording.masked_fraction > 1 - (x1 - x0 + 1) * (y1 - y0 + 1) / (height * width)
