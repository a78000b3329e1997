"""Planted bugs of lab 05 (losses): each edits one answer cell and fails exactly its own check.

The four exercises are independent: cross_entropy_from_logits does its own log-sum-exp instead
of calling softmax, the notebook's check cells call only the function they check, and the cells
that use softmax afterwards (the worked examples, the pitfall) are locked demonstrations without
a check. So a softmax that overflows fails `softmax` alone.
"""
from tests.planted import bug

BUGS = [
    # the classic: exp(1000) = inf and inf / inf = NaN
    bug("softmax-no-max-subtraction", "softmax",
        "shifted = z - z.amax(dim=dim, keepdim=True)", "shifted = z", {"softmax"}),
    # the seed's table gives 2.23 instead of 0.74
    bug("cross-entropy-sums-the-samples", "cross_entropy",
        "return per_sample.mean()", "return per_sample.sum()", {"cross_entropy"}),
    bug("focal-loss-p-to-the-gamma", "focal_loss",
        "weight = (1 - p_t) ** gamma", "weight = p ** gamma", {"focal_loss"}),
    # the seed's 0.1549 = -log10(0.7)
    bug("cross-entropy-log10", "cross_entropy",
        "log_p = torch.log(probs.clamp_min(1e-12))", "log_p = torch.log10(probs.clamp_min(1e-12))", {"cross_entropy"}),
    # 0 * log(0) = NaN where a non-target probability is exactly 0
    bug("cross-entropy-no-floor", "cross_entropy",
        "log_p = torch.log(probs.clamp_min(1e-12))", "log_p = torch.log(probs)", {"cross_entropy"}),
    bug("from-logits-no-max-subtraction", "cross_entropy_from_logits",
        "log_sum_exp = m.squeeze(1) + torch.log(torch.exp(logits - m).sum(dim=1))",
        "log_sum_exp = torch.log(torch.exp(logits).sum(dim=1))", {"cross_entropy_from_logits"}),
    bug("from-logits-sums-the-samples", "cross_entropy_from_logits",
        "return (log_sum_exp - true_logit).mean()", "return (log_sum_exp - true_logit).sum()",
        {"cross_entropy_from_logits"}),
    bug("focal-loss-ignores-the-label", "focal_loss",
        "p_t = y * p + (1 - y) * (1 - p)", "p_t = p", {"focal_loss"}),
]
