"""HMC-QU: the Kaggle layout written and read back, the sheet's quirks, masks, videos, the CLI."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from echobook.data import hmcqu
from echobook.data.hmcqu import (
    MASK_FLAG, SHEET_COLUMNS, HmcquFormatError, check_hmcqu, compose_frames, read_hmcqu, read_sheet, write_hmcqu,
)
from echobook.data.synthetic import SyntheticConfig, make_video

ENGINE = SyntheticConfig(image_size=32, frames=30)
VIDEOS = 6


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return write_hmcqu(tmp_path_factory.mktemp("hmcqu") / "root", VIDEOS, seed=1, config=ENGINE)


@pytest.fixture
def copy(written, tmp_path):
    return shutil.copytree(written, tmp_path / "root")


def test_layout_and_labels(written):
    dataset = read_hmcqu(written)
    assert len(dataset) == VIDEOS and not dataset.problems
    assert all(" " in name for name in dataset.names)  # names with spaces, kept verbatim
    assert (written / "HMC-QU" / "A4C" / f"{dataset.names[0]}.avi").is_file()
    # about two MI recordings for each normal one, MI exactly when a segment is abnormal
    assert dataset.mi.sum() == round(VIDEOS * hmcqu.HMCQU_MI_SHARE)
    np.testing.assert_array_equal(dataset.mi, dataset.segments.any(axis=1))
    assert np.all(np.isnan(dataset.ef_percent)) and set(dataset.splits) == {"TRAIN"}
    np.testing.assert_allclose(dataset.fps, hmcqu.HMCQU_FPS)


def test_cycle_and_masks_line_up(written):
    dataset = read_hmcqu(written)
    masked = int(np.flatnonzero(dataset.has_mask)[0])
    record = dataset.records[masked]
    cycle, masks = dataset.cycle(masked), dataset.mask(masked)
    assert len(cycle) == len(masks) == record.cycle_frames > 1
    assert masks.shape[1:] == (224, 224) and set(np.unique(masks)) == {0, 1}
    np.testing.assert_array_equal(cycle[0], dataset.video(masked)[record.cycle_start])


def test_mask_flag_is_the_wingdings_character(written):
    raw = pd.read_excel(written / "A4C.xlsx", header=None, dtype=object)
    flags = raw.iloc[1:, 9].dropna().unique().tolist()
    assert flags == [MASK_FLAG] and MASK_FLAG == "ü"
    assert raw.iloc[0, 0] == "ECHO" and raw.shape[1] == len(SHEET_COLUMNS)


def test_sheet_with_an_extra_column_and_a_blank_row(copy):
    path = copy / "A4C.xlsx"
    sheet = pd.read_excel(path, dtype=object)
    sheet["Notes"] = "checked"
    blank = pd.DataFrame([[None] * sheet.shape[1]], columns=sheet.columns)
    pd.concat([sheet.iloc[:2], blank, sheet.iloc[2:]]).to_excel(path, index=False)
    dataset = read_hmcqu(copy)
    assert len(dataset) == VIDEOS
    assert dataset.problems[hmcqu.EXTRA_COLUMNS] == 1 and dataset.problems[hmcqu.BLANK_ROWS] == 1


def test_header_below_a_title_row(copy):
    path = copy / "A4C.xlsx"
    sheet = pd.read_excel(path, header=None, dtype=object)
    title = pd.DataFrame([["HMC-QU A4C"] + [None] * (sheet.shape[1] - 1)])
    pd.concat([title, sheet]).to_excel(path, index=False, header=False)
    assert read_hmcqu(copy).names == read_hmcqu(copy).names and len(read_hmcqu(copy)) == VIDEOS


def test_bad_segment_value_names_file_row_and_column(copy):
    path = copy / "A4C.xlsx"
    sheet = pd.read_excel(path, dtype=object)
    sheet.iloc[1, 3] = 2
    sheet.to_excel(path, index=False)
    with pytest.raises(HmcquFormatError, match=r"A4C\.xlsx: row 'ES0002 4CH_1', column SEG3: 2 is not 0"):
        read_sheet(path)


def test_missing_mask_file_is_counted_and_named(copy):
    dataset = read_hmcqu(copy)
    masked = int(np.flatnonzero(dataset.has_mask)[0])
    dataset.records[masked].mask_path.unlink()
    reread = read_hmcqu(copy)
    assert reread.problems[hmcqu.MASK_MISSING] == 1 and not reread.has_mask[masked]
    with pytest.raises(FileNotFoundError, match=f"Mask_{reread.names[masked]}.mat"):
        reread.mask(masked)


def test_unreadable_video(copy):
    dataset = read_hmcqu(copy)
    dataset.records[0].video_path.write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match=dataset.names[0]):
        dataset.video(0)
    report = check_hmcqu(copy)
    assert not report.usable and report.problems[hmcqu.UNREADABLE_VIDEO] == 1


def test_missing_video_is_an_error_naming_it(copy):
    dataset = read_hmcqu(copy)
    dataset.records[1].video_path.unlink()
    with pytest.raises(FileNotFoundError, match="ES0002 4CH_1.avi"):
        read_hmcqu(copy)


def test_older_release_is_refused_clearly(tmp_path):
    (tmp_path / "HMC_QU.xlsx").write_bytes(b"")
    (tmp_path / "HMC-QU Echos").mkdir()
    with pytest.raises(HmcquFormatError, match="older HMC-QU release"):
        read_hmcqu(tmp_path)
    assert "older HMC-QU release" in str(check_hmcqu(tmp_path))


def test_caption_and_ecg_sit_outside_the_centre_crop():
    from echobook.methods.transfer import centre_crop

    video = make_video(0, 0, SyntheticConfig(image_size=48, frames=24))
    frames, _ = compose_frames(video, "ES0001 4CH_1")
    height, width, top, left = hmcqu.canvas_geometry(48)
    assert frames.shape == (24, height, width)
    outside = frames.copy()
    outside[:, top:top + 48, left:left + 48] = 0
    assert outside[:, :top].max() > 100 and outside[:, top + 48:].max() > 100  # caption above, ECG below
    np.testing.assert_array_equal(centre_crop(frames, 1 / hmcqu.CANVAS_HEIGHT_OVER_SECTOR), video.frames)


def test_cli_synth_and_check(tmp_path, capsys):
    from echobook.cli import main

    assert main(["synth", "hmcqu", str(tmp_path / "h"), "--videos", "3", "--quiet", "--preset", "smoke"]) == 0
    assert "wrote 3 recordings" in capsys.readouterr().out
    assert main(["check-data", "hmcqu", str(tmp_path / "h")]) == 0
    assert "usable: yes" in capsys.readouterr().out
