"""OpenVINO device names: check that the requested one exists before compiling anything."""
import openvino as ov

from ..errors import OvphiError


def check_device(device, core=None):
    """Raise OvphiError listing the available devices unless `device` (CPU, GPU, GPU.1, AUTO, ...) is usable."""
    available = (core or ov.Core()).available_devices
    requested = device.upper()
    if requested == "AUTO" or requested.startswith(("AUTO:", "MULTI:", "HETERO:")):
        return requested
    if requested in available or (requested == "GPU" and any(d.startswith("GPU") for d in available)):
        return requested
    raise OvphiError(f"device {device} is not available; OpenVINO sees: {', '.join(available) or 'none'}")
