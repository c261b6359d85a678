"""The sample data's tie to the runtime core: the smoke test's default question."""

from llmops.dataset.build import prompt_for
from llmops.deploy.smoke import DEFAULT_QUESTION, default_prompt
from llmops.dev.sample_data import facts


def test_smoke_default_question_is_the_first_sample_fact():
    """The smoke test asks the demo's model something it was fine-tuned on (the core keeps a copy)."""
    assert facts()[0].question == DEFAULT_QUESTION
    assert default_prompt() == prompt_for(facts()[0].question)
