"""The training engine shared by every learner (:mod:`worldmodel.train.engine`), its configuration
(:mod:`worldmodel.train.config`), torchrun DDP helpers, schedules, logging and the ``wm train``
command. Importing this package does not import torch."""
