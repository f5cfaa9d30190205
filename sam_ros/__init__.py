"""sam_ros: segment everything with MobileSAM, in real time, in 3D, for ROS 2."""
