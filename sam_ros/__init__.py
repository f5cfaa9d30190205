"""sam_ros: segment everything with MobileSAM, in real time, in 3D, for ROS 2."""
# The generated message modules (sam_ros.msg) live in the colcon install tree, the hand-written code
# may be imported from a source checkout: let either directory complete the other.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
