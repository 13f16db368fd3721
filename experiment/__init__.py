"""The shiftedMNIST experiment: classifier, training loop, run folder, reports."""
