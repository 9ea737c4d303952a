"""Plug-in learners for tests: loaded by ``tests.plugins:Name`` as a user's would be."""

from algorithms.mt_finetune import MTFinetune


class BrokenLearner(MTFinetune):
    """MT+FT that fails at its third meta-step: a run that crashes mid-way."""

    name = "broken"

    def meta_train_step(self, batch):
        if self.steps == 2:
            raise RuntimeError("boom at step 3")
        return super().meta_train_step(batch)
