"""Planted bugs of lab 04 (xor): the data, the two models and the training loop.

Every check but `mlp_accuracy` tests one exercise on its own (its own data, its own training
loop). `mlp_accuracy` grades the notebook's whole pipeline — make_xor_data → make_xor_mlp →
train_xor from seed 4 — so a bug there costs it too when the trained network no longer gets
all four right: a network with no hidden activation (a linear model), a loop that never clears
its gradients, labels that are not XOR's, a model that cannot run. A bug that leaves the pipeline
able to learn XOR (one bias fewer, the same rows in another order) fails its own check only.
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
        {"train_xor", "mlp_accuracy"}),
    bug("mlp-output-layer-no-bias", "make_xor_mlp", "nn.Linear(10, 1),", "nn.Linear(10, 1, bias=False),",
        {"param_count"}),
    bug("mlp-hidden-width-mismatch", "make_xor_mlp", "nn.Linear(10, 10),  # hidden 1 -> hidden 2",
        "nn.Linear(10, 20),  # hidden 1 -> hidden 2", {"param_count", "mlp_accuracy"}),
    bug("xor-data-or-labels", "make_xor_data", "Y = torch.tensor([[0.0], [1.0], [1.0], [0.0]])",
        "Y = torch.tensor([[0.0], [1.0], [1.0], [1.0]])", {"make_xor_data", "train_xor", "mlp_accuracy"}),
    bug("xor-data-rows-reordered", "make_xor_data", "[[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]",
        "[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]", {"make_xor_data"}),
    bug("single-layer-no-sigmoid", "make_single_layer", "nn.Sequential(nn.Linear(2, 1), nn.Sigmoid())",
        "nn.Sequential(nn.Linear(2, 1))", {"single_layer"}),
]
