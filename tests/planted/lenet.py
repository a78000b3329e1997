"""Planted bugs of lab 10 (lenet): LeNet5's layers, the zip-code reader, Standardize and grad_cam.

A LeNet5 that cannot run (a shape mismatch before fc1) fails shapes, accuracy and zip_code —
the training cell raises, and both the accuracy and the zip-code checks need a working model —
but param_count only when the count changes (padding has no parameters). A model that runs with
a wrong layer size still trains: it fails shapes and param_count only. A reader bug fails
zip_code alone. A grad_cam bug fails grad_cam alone (its check explains a model of its own).
"""
from tests.planted import bug

BUGS = [
    bug("conv1-no-padding", "LeNet5", "kernel_size=5, padding=2)", "kernel_size=5)",
        {"shapes", "accuracy", "zip_code"}),
    bug("zip-code-no-invert", "read_zip_code", "crops = 255.0 - crops", "crops = crops", {"zip_code"}),
    bug("fc1-flatten-size-for-no-padding", "LeNet5", "nn.Linear(16 * 5 * 5, 120)", "nn.Linear(16 * 4 * 4, 120)",
        {"shapes", "param_count", "accuracy", "zip_code"}),
    bug("fc3-eleven-classes", "LeNet5", "nn.Linear(84, num_classes)", "nn.Linear(84, 11)",
        {"shapes", "param_count"}),
    bug("zip-code-boxes-reversed", "read_zip_code", "for i in range(5)])", "for i in reversed(range(5))])",
        {"zip_code"}),
    # mean and std kept as plain attributes: the forward is right (the model still learns), but
    # they are not in the state_dict and would not follow .to(device)
    bug("standardize-plain-attributes", "Standardize", 'self.register_buffer("mean", torch.tensor(float(mean)))',
        "self.mean = torch.tensor(float(mean))", {"standardize"}),
    # Grad-CAM without the ReLU: evidence against the class is drawn as evidence for it
    bug("grad-cam-no-relu", "grad_cam", "cam = F.relu((weights * maps).sum(dim=1)).detach()",
        "cam = (weights * maps).sum(dim=1).detach()", {"grad_cam"}),
    # the hook stays on the layer: every later forward pass keeps the maps alive
    bug("grad-cam-leaves-its-hook", "grad_cam", "        handle.remove()\n", "", {"grad_cam"}),
]
