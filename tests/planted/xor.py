"""Planted bugs of lab 04 (xor): the data, the two models and the training loop.

Every check tests one exercise on its own: its own XOR data, its own training loop (`train_xor`'s
check gives it a correct `make_xor_data`; `mlp_accuracy` trains `make_xor_mlp()` from seed 4 with
the check's loop). So a bug costs the checks of its own exercise only: a wrong make_xor_mlp may
fail both of its checks (the count, and learning XOR), a loop that never clears its gradients
fails train_xor alone, OR's labels fail make_xor_data alone.
"""
from tests.planted import bug

_HIDDEN = """\
        nn.Linear(2, 10),  # input -> hidden 1: 30 parameters
        nn.Sigmoid(),
        nn.Linear(10, 10),  # hidden 1 -> hidden 2: 110
        nn.Sigmoid(),
        nn.Linear(10, 10),  # hidden 2 -> hidden 3: 110
        nn.Sigmoid(),
        nn.Linear(10, 1),  # hidden 3 -> output: 11
"""

BUGS = [
    bug("mlp-no-hidden-activation", "make_xor_mlp", _HIDDEN, _HIDDEN.replace("        nn.Sigmoid(),\n", ""),
        {"mlp_accuracy"}),
    bug("train-xor-no-zero-grad", "train_xor",
        "optimizer.zero_grad()  # .grad accumulates: clear the previous epoch's gradient", "pass",
        {"train_xor"}),
    bug("mlp-output-layer-no-bias", "make_xor_mlp", "nn.Linear(10, 1),", "nn.Linear(10, 1, bias=False),",
        {"param_count"}),
    bug("mlp-hidden-width-mismatch", "make_xor_mlp", "nn.Linear(10, 10),  # hidden 1 -> hidden 2",
        "nn.Linear(10, 20),  # hidden 1 -> hidden 2", {"param_count", "mlp_accuracy"}),
    bug("xor-data-or-labels", "make_xor_data", "Y = torch.tensor([[0.0], [1.0], [1.0], [0.0]])",
        "Y = torch.tensor([[0.0], [1.0], [1.0], [1.0]])", {"make_xor_data"}),
    bug("xor-data-rows-reordered", "make_xor_data", "[[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]",
        "[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]", {"make_xor_data"}),
    bug("single-layer-no-sigmoid", "make_single_layer", "nn.Sequential(nn.Linear(2, 1), nn.Sigmoid())",
        "nn.Sequential(nn.Linear(2, 1))", {"single_layer"}),
]
