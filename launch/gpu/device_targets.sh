# Sourced by launch/gpu/run_on_device.sh and launch/check_cuda_build.sh: the CMake targets each
# stage of the device run needs, kept in one place so that the check off the device
# (check_cuda_build.sh --device-targets) builds exactly what the device's build stage builds.
# shellcheck disable=SC2034  # used by the scripts that source this file
device_targets_nccl=(nccl_gpu_tests host_sync_tests)  # the NCCL tests, then the host-sync count
device_targets_bench=(train_step_bench)                # bench/train/bench_train_step.py drives it
device_targets_demo=(sdtrain_cli sddemodata)           # the sdtrain CLI and the demo's data
