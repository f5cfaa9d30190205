"""Launch sam_node (a lifecycle node) next to a RealSense-style RGB-D driver, optionally with RViz.

    ros2 launch sam_ros sam_ros.launch.py checkpoint:=/path/to/mobile_sam.pt
    ros2 launch sam_ros sam_ros.launch.py image:=/my_cam/rgb depth:=/my_cam/depth camera_info:=/my_cam/info
    ros2 launch sam_ros sam_ros.launch.py image_transport:=compressed   # colour from <image>/compressed
    ros2 launch sam_ros sam_ros.launch.py autostart:=false   # unconfigured until a lifecycle manager says so
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("sam_ros")
    arguments = [
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "sam_ros.yaml"]),
                              description="Node parameters (every tunable, with ranges)"),
        DeclareLaunchArgument("checkpoint", default_value=EnvironmentVariable("SAM_ROS_CHECKPOINT", default_value=""),
                              description="mobile_sam.pt path; overrides the params file"),
        DeclareLaunchArgument("target_frame", default_value="",
                              description="TF frame for the 3D objects (e.g. base_link); '' = camera optical frame; "
                                          "overrides the params file"),
        DeclareLaunchArgument("image", default_value="/camera/color/image_raw"),
        DeclareLaunchArgument("image_transport", default_value="raw", choices=["raw", "compressed"],
                              description="compressed: subscribe to <image>/compressed (sensor_msgs/CompressedImage)"),
        DeclareLaunchArgument("depth", default_value="/camera/aligned_depth_to_color/image_raw"),
        DeclareLaunchArgument("camera_info", default_value="/camera/color/camera_info"),
        DeclareLaunchArgument("rviz", default_value="false", description="Also start RViz with sam_ros.rviz"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="Configure and activate at start-up; false = wait for a lifecycle manager"),
        # Best-effort ~1 MB images at 30 Hz need Fast DDS's shared-memory transport with a large segment: with
        # the default transports most frames are dropped. A profile the robot already uses wins: this one is
        # only the default when FASTDDS_DEFAULT_PROFILES_FILE is unset, and only sam_node gets it.
        DeclareLaunchArgument("fastdds_profile", default_value=EnvironmentVariable(
            "FASTDDS_DEFAULT_PROFILES_FILE", default_value=PathJoinSubstitution([share, "config", "fastdds_profile.xml"])),
            description="Fast DDS XML profile of sam_node (default: $FASTDDS_DEFAULT_PROFILES_FILE, else the "
                        "shipped large shared-memory segment profile)"),
    ]
    node = LifecycleNode(
        package="sam_ros", executable="sam_node", name="sam_node", namespace="", output="screen",
        additional_env={"FASTDDS_DEFAULT_PROFILES_FILE": LaunchConfiguration("fastdds_profile")},
        parameters=[LaunchConfiguration("params_file"), {"checkpoint": LaunchConfiguration("checkpoint"),
                                                         "target_frame": LaunchConfiguration("target_frame"),
                                                         "image_transport": LaunchConfiguration("image_transport"),
                                                         "autostart": LaunchConfiguration("autostart")}],
        remappings=[("image", LaunchConfiguration("image")),
                    ("image/compressed", [LaunchConfiguration("image"), "/compressed"]),
                    ("depth", LaunchConfiguration("depth")),
                    ("camera_info", LaunchConfiguration("camera_info"))],
    )
    rviz = Node(package="rviz2", executable="rviz2", name="rviz2", condition=IfCondition(LaunchConfiguration("rviz")),
                arguments=["-d", PathJoinSubstitution([share, "rviz", "sam_ros.rviz"])])
    return LaunchDescription([*arguments, node, rviz])
