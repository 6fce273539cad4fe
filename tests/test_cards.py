"""Model cards (echobook.cards): saved with the weights, read back safely, refused when absent."""
import json

import numpy as np
import pytest
import torch

from echobook import cards
from echobook.training import CheckpointError, atomic_save


def test_a_saved_model_comes_back_with_its_card(tmp_path):
    model = torch.nn.Linear(3, 2)
    card = cards.new_card(method="demo", variant="linear", size="smoke", seed=np.int64(4),
                          metrics={"mae": np.float32(3.5)}, preprocessing={"image_size": 48, "mean_std": (30.0, 40.0)})
    path = cards.save_with_card(tmp_path / "run", model.state_dict(), card)
    checkpoint, loaded = cards.read_with_card(tmp_path / "run")
    assert path.name == cards.MODEL_FILE and loaded == json.loads((tmp_path / "run" / cards.CARD_FILE).read_text())
    assert loaded["seed"] == 4 and loaded["metrics"]["mae"] == pytest.approx(3.5)
    assert loaded["preprocessing"]["mean_std"] == [30.0, 40.0] and loaded["git_commit"]
    fresh = torch.nn.Linear(3, 2)
    fresh.load_state_dict(checkpoint["model"])
    torch.testing.assert_close(fresh.weight, model.weight)
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_a_card_without_its_fields_and_a_checkpoint_without_a_card_are_refused(tmp_path):
    with pytest.raises(ValueError, match="variant"):
        cards.save_with_card(tmp_path, {}, {"method": "demo"})
    atomic_save({"model": torch.nn.Linear(2, 2).state_dict()}, tmp_path / "bare.pth")
    with pytest.raises(CheckpointError, match="bare.pth.*no model card"):
        cards.read_with_card(tmp_path / "bare.pth")


def test_the_data_fingerprint_changes_with_names_labels_and_splits():
    base = cards.data_fingerprint(["a", "b", "c"], [50.0, 60.0, 70.0], ["TRAIN", "TRAIN", "VAL"])
    assert base["counts"] == {"videos": 3, "TRAIN": 2, "VAL": 1}
    assert base == cards.data_fingerprint(["a", "b", "c"], [50.0, 60.0, 70.0], ["TRAIN", "TRAIN", "VAL"])
    for other in (cards.data_fingerprint(["a", "b", "d"], [50.0, 60.0, 70.0], ["TRAIN", "TRAIN", "VAL"]),
                  cards.data_fingerprint(["a", "b", "c"], [50.0, 61.0, 70.0], ["TRAIN", "TRAIN", "VAL"]),
                  cards.data_fingerprint(["a", "b", "c"], [50.0, 60.0, 70.0], ["TRAIN", "VAL", "VAL"])):
        assert other["digest"] != base["digest"]


def test_git_commit_outside_a_checkout_is_unknown(tmp_path):
    assert cards.git_commit(tmp_path) == "unknown"
