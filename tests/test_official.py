"""Official weights (echobook.official): CoReEcho's and EchoNet-Dynamic's checkpoint layouts, written here from
randomly initialised models, are recognised, loaded with their preprocessing, and a mismatch is refused by name."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from echobook.official import UNCALIBRATED, load_official
from echobook.training import CheckpointError


def dataparallel(state: dict) -> dict:
    return {f"module.{k}": v for k, v in state.items()}


@pytest.fixture(scope="module")
def coreecho_file(tmp_path_factory):
    """CoReEcho's best.pth layout: the UniFormer-S with its unused 1-output head, the MLP regressor apart."""
    from echobook.methods.coreecho import coreecho_model

    torch.manual_seed(0)
    model = coreecho_model("uniformer_s").eval()
    encoder = {k: v for k, v in model.encoder.state_dict().items()}
    encoder.update({"head.weight": torch.zeros(1, 512), "head.bias": torch.full((1,), 55.6)})
    path = tmp_path_factory.mktemp("coreecho") / "best.pth"
    torch.save({"model": dataparallel(encoder), "regressor": dataparallel(model.head.state_dict()), "epoch": 25},
               path)
    return path, model


@pytest.fixture(scope="module")
def echonet_file(tmp_path_factory):
    """EchoNet-Dynamic's best.pt layout: torchvision's r2plus1d_18 with a 1-output fc, from DataParallel."""
    from torchvision.models.video import r2plus1d_18

    torch.manual_seed(0)
    model = r2plus1d_18(weights=None, num_classes=1).eval()
    path = tmp_path_factory.mktemp("echonet") / "best.pt"
    torch.save({"epoch": 44, "state_dict": dataparallel(model.state_dict()), "best_loss": 30.0,
                "opt_dict": {}, "scheduler_dict": {}}, path)
    return path, model


def test_coreecho_checkpoint_loads_key_for_key_with_its_preprocessing(coreecho_file):
    path, original = coreecho_file
    model, card = load_official(path)
    clip = torch.randn(2, 1, 8, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(clip), original(clip), atol=1e-4)
    pre = card["preprocessing"]
    assert card["method"] == "coreecho" and card["variant"] == "uniformer_s" and card["official"]
    assert (pre["image_size"], pre["clip_frames"], pre["clip_stride"], pre["fps"]) == (112, 36, 4, 50.0)
    assert pre["mean"] == pytest.approx(0.1282 * 255, rel=1e-3) and pre["std"] == pytest.approx(0.1959 * 255, rel=1e-3)
    assert card["data"]["note"] == UNCALIBRATED and "conformal" not in card


def test_echonet_checkpoint_loads_with_its_stem_folded_to_gray(echonet_file):
    path, original = echonet_file
    model, card = load_official(path)
    gray = torch.randn(1, 1, 8, 56, 56)
    with torch.no_grad():  # one gray channel == three identical channels
        assert torch.allclose(model(gray), original(gray.expand(-1, 3, -1, -1, -1)).squeeze(-1), atol=1e-3)
    pre = card["preprocessing"]
    assert card["method"] == "echonet_r2plus1d" and (pre["clip_frames"], pre["clip_stride"]) == (32, 2)
    assert pre["mean"] is None and pre["std"] is None  # not stored by EchoNet: taken from each recording


def test_mismatching_checkpoints_are_refused_naming_the_file_and_keys(tmp_path, echonet_file):
    from torchvision.models.video import r2plus1d_18

    wrong_head = tmp_path / "kinetics.pt"
    torch.save({"state_dict": r2plus1d_18(weights=None, num_classes=400).state_dict()}, wrong_head)
    with pytest.raises(CheckpointError, match=r"kinetics\.pt.*other shape: net\.fc\.bias"):
        load_official(wrong_head)
    small = tmp_path / "xxs.pth"
    from echobook.methods.coreecho import coreecho_model

    tiny = coreecho_model("uniformer_xxs")
    torch.save({"model": tiny.encoder.state_dict(), "regressor": tiny.head.state_dict()}, small)
    with pytest.raises(CheckpointError, match=r"xxs\.pth.*CoReEcho's released UniFormer-S"):
        load_official(small)
    other = tmp_path / "other.pt"
    torch.save({"weights": {"a": torch.zeros(1)}}, other)
    with pytest.raises(CheckpointError, match=r"other\.pt: neither an echobook run.*its keys: weights"):
        load_official(other)


def test_predict_with_official_weights_says_there_is_no_interval(echonet_file, tmp_path):
    from echobook.cli import main
    from echobook.data.echonet import save_video
    from echobook.data.synthetic import SyntheticConfig, make_video

    path, _ = echonet_file
    video = make_video(1, 0, SyntheticConfig(image_size=112, frames=70))
    save_video(tmp_path / "heart.avi", video.frames, video.fps)
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "heart.avi"), "--model", str(path), "--out", str(out), "--quiet",
                 "--no-report"]) == 0
    row = pd.read_csv(out / "predictions.csv").iloc[0]
    assert row["status"] == "ok" and np.isfinite(row["ef_percent"]) and np.isnan(row["ef_low_percent"])
    assert "no conformal interval" in row["notes"]
