"""The command lines (`run`, `report`, `confirm`, `gradients`) and each task's protocol
(`configs/`)."""
