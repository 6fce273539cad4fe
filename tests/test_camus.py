"""CAMUS: both releases written and read back, every quirk the reader handles, the biplane rule, the CLI."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest

from echobook.data import camus
from echobook.data.camus import (
    CamusFormatError, camus_biplane, check_camus, parse_cfg, read_camus, read_image, write_camus, write_image,
)
from echobook.data.geometry import biplane_volume_ml, disc_volume_px3, ellipse_contour, tracing_from_contour
from echobook.data.synthetic import SyntheticConfig

ENGINE = SyntheticConfig(image_size=32, frames=30)
PATIENTS = 4


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One folder per release, written once; tests that damage a folder copy it first."""
    base = tmp_path_factory.mktemp("camus")
    return {release: write_camus(base / release, PATIENTS, seed=3, config=ENGINE, release=release)
            for release in camus.RELEASES}


@pytest.fixture
def copy_of(written, tmp_path):
    def make(release: str):
        return shutil.copytree(written[release], tmp_path / release)
    return make


def test_both_releases_read_the_same_patients(written):
    old, new = read_camus(written["2019"]), read_camus(written["2023"])
    assert (old.release, new.release) == ("2019", "2023")
    assert old.names == new.names == [f"patient{i:04d}" for i in range(1, PATIENTS + 1)]
    np.testing.assert_allclose(old.ef_percent, new.ef_percent, atol=0.01)
    assert list(old.qualities) == list(new.qualities)
    assert set(old.splits) == {"TRAIN", "TEST"} and set(new.splits) <= {"TRAIN", "VAL", "TEST"}
    np.testing.assert_array_equal(old.video(0), new.video(0))
    assert old.problems.usable and not old.problems  # nothing odd in a fresh 2019 folder
    assert len(old.subgroups) == camus.SUBGROUP_FOLDS


def test_sequence_runs_from_ed_to_es_with_masks_and_spacing(written):
    dataset = read_camus(written["2023"])
    view = dataset.views()[0]
    sequence = dataset.video(0)
    assert sequence.dtype == np.uint8 and sequence.ndim == 3 and len(sequence) == view.info.frame_count
    assert (view.ed_frame, view.es_frame) == (0, len(sequence) - 1)
    np.testing.assert_array_equal(sequence[0], view.frame("ED"))
    np.testing.assert_array_equal(sequence[-1], view.frame("ES"))
    labels = view.sequence_labels()
    np.testing.assert_array_equal(labels[0], view.mask("ED"))
    assert set(np.unique(view.mask("ED"))) <= {0, 1, 2, 3} and (view.mask("ED") == 1).any()
    # the LV cavity is larger at ED than at ES
    assert (view.mask("ED") == 1).sum() > (view.mask("ES") == 1).sum()
    row_mm, col_mm = view.mm_per_pixel()
    assert row_mm == pytest.approx(col_mm) and row_mm > 0


@pytest.mark.parametrize("suffix", [".mhd", ".nii.gz"])
def test_axis_order_and_spacing_survive_both_libraries(tmp_path, suffix):
    frames = np.arange(3 * 5 * 7, dtype=np.uint8).reshape(3, 5, 7)  # [T, H, W], not square
    write_image(tmp_path / f"x{suffix}", frames, (0.4, 0.3))
    read, spacing = read_image(tmp_path / f"x{suffix}")
    np.testing.assert_array_equal(read, frames)
    assert spacing == pytest.approx((0.4, 0.3))
    write_image(tmp_path / f"y{suffix}", frames[:1], (0.4, 0.3))  # one frame, as the ED/ES files
    single, _ = read_image(tmp_path / f"y{suffix}")
    np.testing.assert_array_equal(single, frames[:1])


def test_metaimage_header_is_camus_style(written):
    header = (written["2019"] / "training" / "patient0001" / "patient0001_4CH_sequence.mhd").read_text()
    assert "ElementType = MET_UCHAR" in header and "ElementDataFile = patient0001_4CH_sequence.raw" in header
    frames = read_camus(written["2019"]).video(0)
    assert f"DimSize = {frames.shape[2]} {frames.shape[1]} {frames.shape[0]}" in header


def test_missing_cfg_key_names_file_and_key(copy_of):
    root = copy_of("2019")
    cfg = root / "training" / "patient0001" / "Info_4CH.cfg"
    cfg.write_text("".join(line + "\n" for line in cfg.read_text().splitlines() if not line.startswith("ES:")))
    with pytest.raises(CamusFormatError, match=r"Info_4CH\.cfg: missing key\(s\) ES"):
        read_camus(root)
    report = check_camus(root)
    assert not report.usable and "missing key" in str(report)


def test_both_ef_keys_and_absent_volumes(copy_of):
    root = copy_of("2023")
    info = parse_cfg(root / "database_nifti" / "patient0001" / "Info_4CH.cfg")
    assert np.isnan(info.edv_ml) and info.frame_rate > 0 and not np.isnan(info.ef_percent)
    cfg = root / "database_nifti" / "patient0001" / "Info_2CH.cfg"
    cfg.write_text(cfg.read_text().replace("EF:", "Comment:"))
    dataset = read_camus(root, view="2CH")
    assert np.isnan(dataset.ef_percent[0]) and dataset.problems[camus.NO_EF] == 1


def test_missing_mask_is_counted_and_named(copy_of):
    root = copy_of("2019")
    gt = root / "training" / "patient0002" / "patient0002_4CH_ES_gt.mhd"
    gt.unlink()
    dataset = read_camus(root)
    assert dataset.problems[camus.MISSING_MASKS] == 1
    assert not dataset.has_masks[1] and dataset.has_masks[0]
    with pytest.raises(FileNotFoundError, match="patient0002_4CH_ES_gt.mhd"):
        dataset.views()[1].mask("ES")


def test_ed_after_es_is_reversed_and_said_once(copy_of, written):
    root = copy_of("2023")
    folder = root / "database_nifti" / "patient0001"
    original = read_camus(written["2023"]).video(0)
    sequence_path = folder / "patient0001_4CH_half_sequence.nii.gz"
    frames, spacing = read_image(sequence_path)
    write_image(sequence_path, frames[::-1].copy(), spacing)  # stored ES first
    cfg = folder / "Info_4CH.cfg"
    lines = cfg.read_text().splitlines()
    count = len(frames)
    lines = [f"ED: {count}" if l.startswith("ED:") else "ES: 1" if l.startswith("ES:") else l for l in lines]
    cfg.write_text("\n".join(lines) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = read_camus(root)
    assert sum("ED after ES" in str(w.message) for w in caught) == 1
    assert dataset.problems[camus.ED_AFTER_ES] == 1
    view = dataset.views()[0]
    assert view.reversed and (view.ed_frame, view.es_frame) == (0, count - 1)
    np.testing.assert_array_equal(dataset.video(0), original)


def test_raw_shorter_than_header(copy_of):
    root = copy_of("2019")
    raw = root / "training" / "patient0001" / "patient0001_4CH_sequence.raw"
    with open(raw, "r+b") as file:
        file.truncate(raw.stat().st_size // 2)
    dataset = read_camus(root)  # cfgs only: reading the sequence is what fails
    with pytest.raises(CamusFormatError, match=r"patient0001_4CH_sequence\.raw: \d+ bytes, but .*says DimSize"):
        dataset.video(0)
    report = check_camus(root)
    assert not report.usable and "unreadable sequence" in str(report)


def test_not_a_camus_folder(tmp_path):
    with pytest.raises(CamusFormatError, match="not a CAMUS folder"):
        read_camus(tmp_path)
    assert not check_camus(tmp_path).usable


def test_biplane_of_two_equal_views_is_the_disc_rule_with_camus_height():
    contour = ellipse_contour((50, 60), 30, 12)
    tracing = tracing_from_contour(contour, np.array([50.0, 30.0]), np.array([38.0, 90.0]), np.array([62.0, 90.0]))
    # identical views: pi/4 sum d_i^2 * L/N, i.e. the single-plane rule's discs with CAMUS's height L/20
    single_plane_px3 = disc_volume_px3(tracing)
    expected_ml = single_plane_px3 * 21 / 20 * 0.5 ** 3 / 1000
    assert biplane_volume_ml(tracing, tracing, 0.5, 0.5) == pytest.approx(expected_ml)
    with pytest.raises(ValueError, match="mm_per_pixel_b"):
        biplane_volume_ml(tracing, tracing, 0.5, 0.0)


def test_biplane_ef_of_synthetic_patients_is_close_to_the_cfg(written):
    dataset = read_camus(written["2023"])
    for patient, cfg_ef in zip(dataset.patients, dataset.ef_percent):
        measured = camus_biplane(patient)
        assert measured["edv_ml"] > measured["esv_ml"] > 0
        assert abs(measured["ef_percent"] - cfg_ef) < 8.0  # the heart's truth vs discs on 32-px masks


def test_clip_loaders_read_a_camus_table(written):
    from echobook.data.clips import clip_dataloaders

    dataset = read_camus(written["2019"], split="TRAIN")
    dls = clip_dataloaders(dataset, dataset, clip_frames=4, clip_stride=1, batch_size=2, device="cpu", image_size=32)
    clips, ef_percent = dls.train.one_batch()
    assert tuple(clips.shape) == (2, 1, 4, 32, 32) and ef_percent.shape == (2,)
    assert set(dataset.subset("TEST").names).isdisjoint(dataset.names)


def test_writer_refuses_a_non_empty_folder_and_repeats_itself(tmp_path, written):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        write_camus(tmp_path / "a", 1, config=ENGINE)
    again = write_camus(tmp_path / "b", PATIENTS, seed=3, config=ENGINE, release="2019")
    name = "training/patient0001/patient0001_2CH_sequence.raw"
    assert (again / name).read_bytes() == (written["2019"] / name).read_bytes()


def test_cli_synth_and_check(tmp_path, capsys):
    from echobook.cli import main

    assert main(["synth", "camus", str(tmp_path / "c"), "--patients", "2", "--release", "2023", "--quiet",
                 "--preset", "smoke"]) == 0
    assert "wrote 2 patients" in capsys.readouterr().out
    assert main(["check-data", "camus", str(tmp_path / "c")]) == 0
    assert "usable: yes" in capsys.readouterr().out
    assert main(["check-data", "camus", str(tmp_path / "nothing")]) == 1
