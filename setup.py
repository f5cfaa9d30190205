"""pip install of the ROS-free core and CLI (colcon builds the ROS package through CMakeLists.txt)."""
from setuptools import find_packages, setup

setup(
    name="sam_ros",
    version="0.1.0",
    description="MobileSAM segment-everything with depth fusion for ROS 2",
    license="Apache-2.0",
    packages=find_packages(include=["sam_ros", "sam_ros.*"]),
    package_data={"sam_ros": ["data/*", "data/*/*", "synthetic/textures/*"]},
    python_requires=">=3.10",
    install_requires=["torch==2.13.0", "numpy>=1.24", "pillow>=10", "pyyaml>=6", "tqdm>=4.60",
                      "rosbags==0.11.9", "zstandard>=0.22", "scipy>=1.11", "opencv-python-headless>=4.8"],
    entry_points={"console_scripts": [
        "sam-ros-segment=sam_ros.cli:main",
        "sam_node=sam_ros.ros.node:main",
    ]},
)
