"""The ROS 2 adapter: the only part of sam_ros that imports rclpy and message packages."""
