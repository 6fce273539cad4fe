"""``echobook bench``'s model-cost comparison: sane timings (a slower model measures slower), counts, the table."""
import pytest
import torch
from torch import nn

from echobook import bench


class Repeated(nn.Module):
    """Applies the same 3-D conv ``repeats`` times: the work, and so the latency, grows with ``repeats``."""

    def __init__(self, repeats: int):
        super().__init__()
        self.conv = nn.Conv3d(1, 1, 3, padding=1)
        self.repeats = repeats

    def forward(self, clip):
        for _ in range(self.repeats):
            clip = self.conv(clip)
        return clip.flatten(1).mean(1)


CLIP = (1, 1, 8, 48, 48)


def test_a_slower_model_measures_slower():
    rows = bench.model_costs({"light": Repeated(1), "heavy": Repeated(40)}, CLIP, cpu_threads=1, steps=5)
    light, heavy = rows
    assert (light["model"], heavy["model"]) == ("light", "heavy")
    assert heavy["cpu_ms_per_clip"] > 3 * light["cpu_ms_per_clip"]
    assert heavy["multiply_adds"] == 40 * light["multiply_adds"]
    assert light["parameters"] == heavy["parameters"] == 28
    assert light["cpu_clips_per_s"] == pytest.approx(1e3 / light["cpu_ms_per_clip"])
    assert light["gpu_clips_per_s"] is None  # no CUDA device asked for


def test_threads_are_restored_and_batches_refused():
    before = torch.get_num_threads()
    bench.model_costs({"light": Repeated(1)}, CLIP, cpu_threads=1, steps=1)
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="batch of one clip"):
        bench.model_costs({"light": Repeated(1)}, (2, *CLIP[1:]), steps=1)


def test_the_cost_table_names_both_models_and_their_ratio():
    rows = bench.model_costs({"light": Repeated(1), "heavy": Repeated(20)}, CLIP, cpu_threads=1, steps=2)
    text = bench.format_model_costs({"clip": list(CLIP), "rows": rows})
    assert "8x48x48" in text and "light" in text and "heavy" in text and "timed in turns" in text
    assert text.splitlines()[2].split()[4] == "1.0"  # the first model's latency over itself


def test_the_comparison_measures_e3net_against_uniformer_s_and_r2plus1d_at_a_clip():
    costs = bench.cost_comparison("smoke", steps=1, cpu_threads=1)
    names = [row["registered_name"] for row in costs["rows"]]
    assert names == ["e3net_s", "uniformer_s", "r2plus1d_18"] and costs["clip"] == [1, 1, 8, 48, 48]
    e3net_row, uniformer_row, r2plus1d_row = costs["rows"]
    assert uniformer_row["multiply_adds"] < r2plus1d_row["multiply_adds"]  # 19.6 G against 91 G at the full clip
    assert e3net_row["parameters"] < uniformer_row["parameters"] / 10
    assert e3net_row["multiply_adds"] < uniformer_row["multiply_adds"]
