import dataclasses

import pytest

from sam_ros.config import SamRosConfig, coerce, field_names, fields_info


def test_defaults_are_valid_and_every_field_is_described():
    config = SamRosConfig()
    for info in fields_info():
        assert info.description, info.name
        assert isinstance(getattr(config, info.name), info.type), info.name
        if info.low is not None and info.high is not None:
            assert info.low <= info.default <= info.high, info.name


@pytest.mark.parametrize("changes, message", [
    ({"grid_size": 0}, "below the minimum"),
    ({"grid_size": 65}, "above the maximum"),
    ({"pred_iou_thresh": 1.5}, "above the maximum"),
    ({"prompt_mode": "yolo"}, "not one of"),
    ({"device": "tpu"}, "not one of"),
    ({"grid_size": 2.5}, "expected an integer"),
    ({"grid_size": "many"}, "expected an integer"),
    ({"use_depth": "maybe"}, "expected true/false"),
    ({"nms_thresh": float("nan")}, "NaN"),
    ({"min_depth": 5.0, "max_depth": 2.0}, "min_depth"),
    ({"no_such_thing": 1}, "unknown parameter"),
])
def test_invalid_changes_are_refused_with_a_reason(changes, message):
    with pytest.raises(ValueError, match=message):
        SamRosConfig().replace(**changes)


def test_replace_coerces_losslessly_and_leaves_the_original_alone():
    base = SamRosConfig()
    changed = base.replace(grid_size="32", pred_iou_thresh=1, use_depth="false")
    assert (changed.grid_size, changed.pred_iou_thresh, changed.use_depth) == (32, 1.0, False)
    assert isinstance(changed.pred_iou_thresh, float)
    assert base.grid_size == 16
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.grid_size = 8


def test_yaml_plain_and_ros_params_file(tmp_path):
    plain = tmp_path / "plain.yaml"
    plain.write_text("grid_size: 8\nprompt_mode: aop\n")
    assert SamRosConfig.from_yaml(plain).grid_size == 8
    ros = tmp_path / "ros.yaml"
    ros.write_text("sam_node:\n  ros__parameters:\n    min_area: 50\n    device: cpu\n")
    config = SamRosConfig.from_yaml(ros)
    assert (config.min_area, config.device) == (50, "cpu")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sam_node:\n  ros__parameters:\n    min_area: -1\n")
    with pytest.raises(ValueError, match="min_area"):
        SamRosConfig.from_yaml(bad)


def test_coerce_rejects_bool_as_number():
    with pytest.raises(ValueError):
        coerce("grid_size", True)
    assert "grid_size" in field_names()


def test_shipped_params_file_lists_every_field_with_its_default():
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[1] / "config" / "sam_ros.yaml"
    params = yaml.safe_load(path.read_text())["sam_node"]["ros__parameters"]
    assert sorted(params) == sorted(field_names())
    assert SamRosConfig.from_yaml(path) == SamRosConfig()
    from sam_ros.config import params_file_text
    assert path.read_text() == params_file_text(), "regenerate with sam_ros.config.params_file_text()"
