"""Planted bugs of lab 13 (transfer): freezing, the new head, counting, the three models and
their learning rates.

A bug in `freeze`, `replace_head` or `trainable_parameters` fails its own check; it fails the
notebook's checks too only when the notebook's models change with it (a `freeze` that freezes
nothing leaves the feature-extraction backbone trainable). Freezing after the new head leaves
nothing to train in feature extraction: the training cell stops there, so both model checks
fail. Fine-tuning at a high learning rate wrecks the pre-trained features: only the accuracy
comparison fails.
"""
from tests.planted import bug

BUGS = [
    bug("freeze-after-new-head", "transfer_models", "replace_head(freeze(pretrained()), num_classes)",
        "freeze(replace_head(pretrained(), num_classes))", {"feature_extraction", "transfer_beats_scratch"}),
    bug("fine-tuning-learning-rate-too-high", "learning_rates", "'fine_tuning': 0.001", "'fine_tuning': 0.1",
        {"transfer_beats_scratch"}),
    bug("freeze-sets-a-module-attribute", "freeze", "for p in model.parameters():\n        p.requires_grad_(False)",
        "model.requires_grad = False", {"freeze", "feature_extraction"}),
    bug("classifier-replaced-whole", "replace_head", "classifier[last] = new_linear(classifier[last])",
        "model.classifier = new_linear(classifier[last])", {"replace_head"}),
    bug("first-linear-of-classifier", "replace_head", "last = max(", "last = min(", {"replace_head"}),
    bug("trainable-counts-frozen-too", "trainable_parameters", "for p in model.parameters() if p.requires_grad)",
        "for p in model.parameters())", {"trainable_parameters"}),
]
