"""sam_node's lifecycle through the real lifecycle services, and start-up failures as a user meets them."""
import os
import shutil
import subprocess
import sys
import time

import rclpy
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.parameter import Parameter

from rosutil import Spinner, call_service, wait_for
from sam_ros.model import BUNDLED_CHECKPOINT
from sam_ros.ros.node import SamNode
from sam_ros.synthetic import to_16uc1_mm
from test_node import Camera, bundled_model_parameters, header_ns, known_scene

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Lifecycle:
    """A client of one node's lifecycle services, as a lifecycle manager (Nav2's, launch_ros's) uses them."""

    GOAL = {Transition.TRANSITION_CONFIGURE: State.PRIMARY_STATE_INACTIVE,
            Transition.TRANSITION_ACTIVATE: State.PRIMARY_STATE_ACTIVE,
            Transition.TRANSITION_DEACTIVATE: State.PRIMARY_STATE_INACTIVE,
            Transition.TRANSITION_CLEANUP: State.PRIMARY_STATE_UNCONFIGURED,
            Transition.TRANSITION_ACTIVE_SHUTDOWN: State.PRIMARY_STATE_FINALIZED,
            Transition.TRANSITION_UNCONFIGURED_SHUTDOWN: State.PRIMARY_STATE_FINALIZED}
    PRIMARY = {State.PRIMARY_STATE_UNCONFIGURED, State.PRIMARY_STATE_INACTIVE, State.PRIMARY_STATE_ACTIVE,
               State.PRIMARY_STATE_FINALIZED}

    def __init__(self, client_node, node_name):
        self.change = client_node.create_client(ChangeState, f"{node_name}/change_state")
        self.get = client_node.create_client(GetState, f"{node_name}/get_state")

    def transition(self, transition_id, timeout=120.0, recheck_every=20.0):
        """Whether the transition succeeded; a reply lost to the DDS race (see call_service) is read from the state.

        Unanswered after ``recheck_every``: in the goal state, it succeeded; in another primary state, the request
        itself was lost and is sent again; in a transition state, it is still running.
        """
        request = ChangeState.Request(transition=Transition(id=transition_id))
        assert self.change.wait_for_service(timeout_sec=60), f"{self.change.srv_name} did not appear"
        deadline = time.monotonic() + timeout
        future = self.change.call_async(request)
        while time.monotonic() < deadline:
            if wait_for(future.done, timeout=min(recheck_every, deadline - time.monotonic())):
                return future.result().success
            state = self.state()
            if state == self.GOAL[transition_id]:
                return True
            if state in self.PRIMARY:
                future = self.change.call_async(request)
        raise AssertionError(f"{self.change.srv_name} did not answer in {timeout:.0f} s")

    def state(self):
        return call_service(self.get, GetState.Request()).current_state.id


def test_transitions_through_the_services(ros):
    scene = known_scene()
    node = SamNode(namespace="lifecycle", parameter_overrides=bundled_model_parameters(grid_size=8))
    camera = Camera(namespace="lifecycle")
    manager = rclpy.create_node("manager", namespace="lifecycle")  # its own executor, as a separate process has
    lifecycle = Lifecycle(manager, "/lifecycle/sam_node")
    spinner, manager_spinner = Spinner(node, camera.node), Spinner(manager)
    depth = to_16uc1_mm(scene.depth)

    def answered(timeout):
        header = camera.next_header()
        return wait_for(lambda: header_ns(header) in camera.masks, timeout=timeout,
                        action=camera.send(scene.rgb, depth, "16UC1", scene, header), action_every=3)

    try:
        assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED and node.segmenter is None
        assert lifecycle.transition(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.state() == State.PRIMARY_STATE_INACTIVE and node.segmenter is not None
        assert not answered(timeout=4), "an inactive node must not process or publish"
        assert lifecycle.transition(Transition.TRANSITION_ACTIVATE)
        assert lifecycle.state() == State.PRIMARY_STATE_ACTIVE
        assert answered(timeout=120)
        model = node.segmenter
        assert lifecycle.transition(Transition.TRANSITION_DEACTIVATE)
        assert lifecycle.state() == State.PRIMARY_STATE_INACTIVE and node.segmenter is model  # kept
        processed = node.counters["processed"]
        assert not answered(timeout=4) and node.counters["processed"] == processed and node.worker is None
        assert lifecycle.transition(Transition.TRANSITION_ACTIVATE) and answered(timeout=120)  # same model again
        assert lifecycle.transition(Transition.TRANSITION_DEACTIVATE)
        assert lifecycle.transition(Transition.TRANSITION_CLEANUP)
        assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED and node.segmenter is None
        assert lifecycle.transition(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.transition(Transition.TRANSITION_ACTIVATE)
        assert lifecycle.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)  # shutdown straight from active
        assert lifecycle.state() == State.PRIMARY_STATE_FINALIZED
        assert node.segmenter is None and node.worker is None
    finally:
        spinner.stop()
        manager_spinner.stop()
        node.destroy_node()
        camera.node.destroy_node()
        manager.destroy_node()


def test_a_failed_configure_leaves_the_node_unconfigured(ros, tmp_path):
    missing = tmp_path / "missing.pt"
    node = SamNode(namespace="failing", parameter_overrides=[Parameter("checkpoint", value=str(missing)),
                                                              Parameter("device", value="cpu")])
    client = rclpy.create_node("lifecycle_client", namespace="failing")
    lifecycle = Lifecycle(client, "/failing/sam_node")
    spinner = Spinner(node, client)
    try:
        assert not lifecycle.transition(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED and node.segmenter is None
        assert lifecycle.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        assert lifecycle.state() == State.PRIMARY_STATE_FINALIZED
    finally:
        spinner.stop()
        node.destroy_node()
        client.destroy_node()


def test_an_integer_for_a_float_parameter_is_taken_as_that_number(ros):
    node = SamNode(namespace="coerce", parameter_overrides=[Parameter("pred_iou_thresh", value=1),
                                                             Parameter("checkpoint", value="bundled")])
    try:
        assert node.parameter_problem is None
        assert node.config.pred_iou_thresh == 1.0 and isinstance(node.config.pred_iou_thresh, float)
        assert node.get_parameter("pred_iou_thresh").value == 1.0
    finally:
        node.destroy_node()


def start(tmp_path, name, *ros_args, env=None):
    """sam_node as a process, as `ros2 run` starts it; stdout and stderr together in one log."""
    log = tmp_path / f"{name}.log"
    command = [sys.executable, "-m", "sam_ros.ros.node", "--ros-args", "-r", f"__node:={name}", *ros_args]
    environment = {**os.environ, "HOME": str(tmp_path), **(env or {})}  # no ~/.cache/sam_ros/mobile_sam.pt
    environment.pop("SAM_ROS_CHECKPOINT", None)
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=environment), log


def test_start_up_failures_are_one_line_and_a_non_zero_exit(ros, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint" * 100)
    model_alone = tmp_path / "model" / "mobile_sam.pt"  # no mobile_sam_aop.pt beside it
    model_alone.parent.mkdir()
    shutil.copy(BUNDLED_CHECKPOINT, model_alone)
    wrong_type = tmp_path / "wrong_type.yaml"
    wrong_type.write_text("/**:\n  ros__parameters:\n    grid_size: many\n")
    cases = {  # name: (arguments, what the one line must say)
        "no_checkpoint": ([], "no model checkpoint found"),
        "corrupt_checkpoint": (["-p", f"checkpoint:={corrupt}"], "not a readable PyTorch checkpoint"),
        "wrong_type": (["--params-file", str(wrong_type), "-p", "checkpoint:=bundled"], "grid_size"),
        "unknown_device": (["-p", "checkpoint:=bundled", "-p", "device:=tpu"], "device: 'tpu' is not one of"),
        "aop_without_predictor": (["-p", f"checkpoint:={model_alone}", "-p", "prompt_mode:=aop", "-p", "device:=cpu"],
                                  "AoP prompt predictor"),
        "unreadable_params_file": (["--params-file", str(tmp_path / "nowhere.yaml")], "cannot start ROS"),
    }
    processes = {name: start(tmp_path, name, *arguments) for name, (arguments, _) in cases.items()}
    for name, (process, log) in processes.items():
        process.wait(timeout=180)
        output = log.read_text()
        errors = [line for line in output.splitlines() if "ERROR" in line or "FATAL" in line]
        assert process.returncode not in (0, None), f"{name}: exit {process.returncode}\n{output}"
        assert "Traceback" not in output, f"{name}:\n{output}"
        assert len(errors) == 1 and cases[name][1] in errors[0], f"{name}:\n{output}"


def test_a_process_under_a_lifecycle_manager(ros, tmp_path):
    """autostart false: the process waits unconfigured until a manager configures and activates it."""
    process, log = start(tmp_path, "managed_sam", "-p", "checkpoint:=bundled", "-p", "device:=cpu",
                         "-p", "autostart:=false", "-p", "grid_size:=8")
    client = rclpy.create_node("manager")
    lifecycle = Lifecycle(client, "/managed_sam")
    spinner = Spinner(client)
    try:
        assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert lifecycle.transition(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.transition(Transition.TRANSITION_ACTIVATE)
        assert lifecycle.state() == State.PRIMARY_STATE_ACTIVE
        assert lifecycle.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
        process.wait(timeout=30)  # finalized: nothing left to do, the process ends
    except AssertionError as error:
        raise AssertionError(f"{error}\nsam_node's log:\n{log.read_text()[-3000:]}") from None
    finally:
        spinner.stop()
        client.destroy_node()
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
    output = log.read_text()
    assert process.returncode == 0 and "Traceback" not in output, output
