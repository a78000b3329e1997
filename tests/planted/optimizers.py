"""Planted bugs of lab 06 (optimizers): each edits one answer cell and fails exactly its checks.

The step checks write .grad themselves and pass lists, so a bug in the base class `Optimizer`
(its __init__ or zero_grad) fails zero_grad alone. SGD's three checks share one class: a bug in the
velocity fails sgd_momentum and nesterov, one in the final update fails all three, one in the
Nesterov branch fails nesterov alone.
"""
from tests.planted import bug

BUGS = [
    bug("adam-no-bias-correction", "Adam", "p -= self.lr * m_hat / (v_hat.sqrt() + self.eps)",
        "p -= self.lr * m / (v.sqrt() + self.eps)", {"adam"}),
    bug("nesterov-plain-momentum", "SGD", "g = (g + self.momentum * v) if self.nesterov else v", "g = v",
        {"nesterov"}),
    bug("rmsprop-eps-inside-sqrt", "RMSProp", "(v.sqrt() + self.eps)", "(v + self.eps).sqrt()", {"rmsprop"}),
    bug("adagrad-keras-initial-accumulator", "AdaGrad", "self.sum_sq = [torch.zeros_like(p)",
        "self.sum_sq = [torch.full_like(p, 0.1)", {"adagrad"}),
    bug("zero-grad-zeroes-instead-of-none", "Optimizer", "p.grad = None", "p.grad = torch.zeros_like(p)",
        {"zero_grad"}),
    bug("optimizer-keeps-the-generator", "Optimizer", "self.params = list(params)", "self.params = params",
        {"zero_grad"}),
    bug("momentum-averages-the-gradient", "SGD", "v.mul_(self.momentum).add_(g)",
        "v.mul_(self.momentum).add_((1 - self.momentum) * g)", {"sgd_momentum", "nesterov"}),
    bug("sgd-steps-uphill", "SGD", "p -= self.lr * g", "p += self.lr * g", {"sgd", "sgd_momentum", "nesterov"}),
    bug("adam-betas-swapped", "Adam", "beta1, beta2 = self.betas", "beta2, beta1 = self.betas", {"adam"}),
]
