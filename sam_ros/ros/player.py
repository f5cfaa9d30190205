"""Replay a rosbag2 recording onto live topics (there is no `ros2 bag` in a pip-installed ROS).

Messages are read as raw CDR with rosbags and handed to rclpy as they are, so what the node receives is
byte for byte what was recorded.
"""
from __future__ import annotations

import importlib
from collections import defaultdict
from pathlib import Path
from typing import Iterator

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message


def read_frames(path: Path, topics: list[str]) -> Iterator[tuple[int, dict[str, bytes]]]:
    """Groups of raw messages sharing one receive timestamp: (timestamp_ns, {topic: cdr bytes})."""
    from rosbags.rosbag2 import Reader

    with Reader(path) as reader:
        connections = [c for c in reader.connections if c.topic in topics]
        missing = set(topics) - {c.topic for c in connections}
        if missing:
            raise ValueError(f"{path}: topics {sorted(missing)} not recorded "
                             f"(recorded: {sorted(c.topic for c in reader.connections)})")
        groups: dict[int, dict[str, bytes]] = defaultdict(dict)
        for connection, timestamp, raw in reader.messages(connections=connections):
            groups[timestamp][connection.topic] = bytes(raw)
        for timestamp in sorted(groups):
            yield timestamp, groups[timestamp]


def get_message(msgtype: str) -> type:
    """'sensor_msgs/msg/Image' -> the rclpy message class."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def message_types(path: Path) -> dict[str, type]:
    from rosbags.rosbag2 import Reader

    with Reader(path) as reader:
        return {c.topic: get_message(c.msgtype) for c in reader.connections}


class Player:
    """Publishes recorded topics, remapped onto ``remap[topic]`` (default: the recorded name)."""

    def __init__(self, node: Node, path: Path, topics: list[str], remap: dict[str, str] | None = None,
                 reliable: bool = False) -> None:
        self.path = Path(path)
        self.topics = topics
        types = message_types(self.path)
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
        remap = remap or {}
        self.types = {t: types[t] for t in topics}
        self.publishers = {t: node.create_publisher(types[t], remap.get(t, t), qos) for t in topics}

    def frames(self) -> Iterator[tuple[int, dict[str, object]]]:
        for timestamp, raw in read_frames(self.path, self.topics):
            yield timestamp, {t: deserialize_message(data, self.types[t]) for t, data in raw.items()}

    def publish(self, messages: dict[str, object]) -> None:
        for topic, msg in messages.items():
            self.publishers[topic].publish(msg)
