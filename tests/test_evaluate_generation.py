"""Batched greedy generation: batching must not change results; stops, EOS and padding handled per row."""

from __future__ import annotations

import pytest
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast
from transformers.generation import StoppingCriteriaList

from attnlab.evaluate.generation import (
    STOPPED_BY_EOS,
    STOPPED_BY_LENGTH,
    StopOnSequences,
    batch_decoder,
    batch_order,
    generate_greedy,
    pad_token_id,
    supports_row_pruning,
)
from attnlab.evaluate.tiny import TINY_ARCHITECTURES, build_tiny_model, build_tiny_tokenizer

# Prompts of clearly different token lengths (3 to ~40 tokens), so batches really are left-padded.
PROMPTS = [
    "Question: Ava has 3 boxes of 12 pens. How many pens does Ava have?\nAnswer:",
    "Question: Hi\nAnswer:",
    "Question: Ben has 7 boxes of 99 cookies, 4 boxes of 15 cards and 2 boxes of 8 tickets. How many cookies?\nAnswer:",
    "x",
    "Question: Dara has 11 marbles.\nAnswer:",
    "Question: Eli has 5 boxes of 20 apples. How many apples?\nAnswer:",
]
MAX_NEW = 24


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def models(tokenizer: PreTrainedTokenizerFast) -> dict[str, PreTrainedModel]:
    return {arch: build_tiny_model(arch, tokenizer, seed=1) for arch in TINY_ARCHITECTURES}


def unbatched_reference(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, prompt: str, n: int) -> list[int]:
    """Plain per-prompt greedy ``generate`` (no padding at all), the plain Hugging Face way; new token ids (EOS kept)."""
    encoded = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(
            **encoded, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    return out[0, encoded["input_ids"].shape[1] :].tolist()


@pytest.mark.parametrize("engine", ["pruned", "generate"])
@pytest.mark.parametrize("architecture", TINY_ARCHITECTURES)
def test_batched_equals_unbatched_token_ids(
    architecture: str, engine: str, models: dict[str, PreTrainedModel], tokenizer: PreTrainedTokenizerFast
) -> None:
    """KEY CORRECTNESS TEST: left-padded batched greedy == per-prompt unpadded greedy, token for token."""
    model = models[architecture]
    lengths = [len(tokenizer(p)["input_ids"]) for p in PROMPTS]
    assert max(lengths) - min(lengths) > 30  # the batch really is padded
    batched = generate_greedy(
        model, tokenizer, PROMPTS, batch_size=len(PROMPTS), max_new_tokens=MAX_NEW, stop_sequences=[], engine=engine
    )
    for prompt, generation in zip(PROMPTS, batched):
        reference = unbatched_reference(model, tokenizer, prompt, MAX_NEW)
        assert list(generation.token_ids) == reference, prompt
        assert generation.n_generated_tokens == len(reference)
        if generation.stopped_by == STOPPED_BY_EOS:
            assert reference[-1] == tokenizer.eos_token_id
        else:
            assert generation.stopped_by == STOPPED_BY_LENGTH and len(reference) == MAX_NEW
        assert generation.n_prompt_tokens == len(tokenizer(prompt)["input_ids"])
    # the outputs differ between prompts (a model that ignored its input would pass the equality trivially)
    assert len({g.token_ids for g in batched}) == len(PROMPTS)


@pytest.mark.parametrize("architecture", ["llama", "diffllama"])
def test_batch_size_and_engine_do_not_change_results(
    architecture: str, models: dict[str, PreTrainedModel], tokenizer: PreTrainedTokenizerFast
) -> None:
    model = models[architecture]
    results = [
        generate_greedy(
            model, tokenizer, PROMPTS, batch_size=b, max_new_tokens=MAX_NEW, stop_sequences=["\n\n"], engine=engine
        )
        for b in (1, 2, 4, len(PROMPTS))
        for engine in ("pruned", "generate")
    ]
    for other in results[1:]:
        assert other == results[0]


@pytest.mark.parametrize("engine", ["pruned", "generate"])
def test_stop_sequence_truncates_and_counts_tokens(
    engine: str, models: dict[str, PreTrainedModel], tokenizer: PreTrainedTokenizerFast
) -> None:
    """Pick a stop string from the model's own free-running output; the row must stop at the token completing it."""
    model = models["llama"]
    free = generate_greedy(model, tokenizer, PROMPTS, batch_size=3, max_new_tokens=MAX_NEW, stop_sequences=[], engine=engine)
    target = 0
    ids = list(free[target].token_ids)
    # the decoded text of the first 10 tokens ends with something printable we can use as a stop string
    prefix_text = tokenizer.decode(ids[:10], skip_special_tokens=True)
    full_text = tokenizer.decode(ids, skip_special_tokens=True)
    stop = full_text[len(prefix_text) : len(prefix_text) + 2]
    assert len(stop) == 2
    cut = full_text.find(stop)
    # the first step whose decoded text contains the stop string
    expected_steps = next(k for k in range(1, len(ids) + 1) if stop in tokenizer.decode(ids[:k], skip_special_tokens=True))

    stopped = generate_greedy(
        model, tokenizer, PROMPTS, batch_size=3, max_new_tokens=MAX_NEW, stop_sequences=[stop], engine=engine
    )
    row = stopped[target]
    assert row.stopped_by == "stop:" + stop
    assert row.text == full_text[:cut]
    assert stop not in row.text
    assert row.n_generated_tokens == expected_steps
    assert row.token_ids == tuple(ids[:expected_steps])
    # every other row is either unaffected or cut at its own first occurrence
    for free_row, stop_row in zip(free, stopped):
        if stop in free_row.text:
            assert stop_row.text == free_row.text[: free_row.text.find(stop)]
            assert stop_row.n_generated_tokens <= free_row.n_generated_tokens
        else:
            assert stop_row == free_row


@pytest.mark.parametrize("engine", ["pruned", "generate"])
def test_eos_ends_row_and_is_excluded(engine: str, tokenizer: PreTrainedTokenizerFast) -> None:
    """Declare a token the model emits early an extra EOS id: rows must end there, EOS counted but not in the text."""
    model = build_tiny_model("llama", tokenizer, seed=1)
    free = generate_greedy(
        model, tokenizer, PROMPTS[:3], batch_size=3, max_new_tokens=MAX_NEW, stop_sequences=[], engine=engine
    )
    ids = free[0].token_ids
    eos_candidate = ids[4]
    first = ids.index(eos_candidate)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, eos_candidate]
    stopped = generate_greedy(
        model, tokenizer, PROMPTS[:3], batch_size=3, max_new_tokens=MAX_NEW, stop_sequences=[], engine=engine
    )
    row = stopped[0]
    assert row.stopped_by == STOPPED_BY_EOS
    assert row.n_generated_tokens == first + 1  # EOS counted
    assert row.token_ids == ids[: first + 1]
    assert row.text == tokenizer.decode(list(ids[:first]), skip_special_tokens=True)  # EOS not in the text
    # other rows of the batch either hit the same EOS themselves or ran on, unaffected by row 0 stopping
    for free_row, stop_row in zip(free[1:], stopped[1:]):
        if eos_candidate in free_row.token_ids:
            assert stop_row.n_generated_tokens == free_row.token_ids.index(eos_candidate) + 1
        else:
            assert stop_row == free_row


def test_tokenizer_without_pad_token() -> None:
    """Hub GPT-2 has no pad token: padding falls back to EOS ids and results still equal unbatched ones."""
    tokenizer = build_tiny_tokenizer(with_pad=False)
    assert tokenizer.pad_token_id is None
    assert pad_token_id(tokenizer) == tokenizer.eos_token_id
    model = build_tiny_model("gpt2", build_tiny_tokenizer(), seed=2)  # same vocabulary, pad id only in the config
    batched = generate_greedy(model, tokenizer, PROMPTS, batch_size=4, max_new_tokens=12, stop_sequences=[])
    for prompt, generation in zip(PROMPTS, batched):
        encoded = tokenizer(prompt, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**encoded, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        reference = out[0, encoded["input_ids"].shape[1] :].tolist()
        assert list(generation.token_ids) == reference[: generation.n_generated_tokens]


def test_order_is_restored_and_sorting_is_by_length(models: dict[str, PreTrainedModel], tokenizer: PreTrainedTokenizerFast) -> None:
    assert batch_order([3, 9, 3, 1, 9]) == [1, 4, 0, 2, 3]
    model = models["diffllama"]
    forward = generate_greedy(model, tokenizer, PROMPTS, batch_size=2, max_new_tokens=8, stop_sequences=[])
    backward = generate_greedy(model, tokenizer, PROMPTS[::-1], batch_size=2, max_new_tokens=8, stop_sequences=[])
    assert backward[::-1] == forward


def test_stop_criteria_unit(tokenizer: PreTrainedTokenizerFast) -> None:
    """StopOnSequences on hand-made token rows: per-row decisions, finished rows stay finished."""
    prompt = tokenizer(["Question: a\nAnswer:"])["input_ids"][0]
    eos = tokenizer.eos_token_id
    rows = [
        tokenizer(" 12\n\nQ", add_special_tokens=False)["input_ids"],
        tokenizer(" 7 apples", add_special_tokens=False)["input_ids"],
    ]
    rows[1] = rows[1] + [eos]
    width = max(len(r) for r in rows)
    rows = [r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows]
    criteria = StopOnSequences(tokenizer, ["\n\n"], len(prompt), [eos], batch_size=2)
    decisions = []
    for step in range(1, width + 1):
        batch = torch.tensor([prompt + r[:step] for r in rows])
        decisions.append(criteria(batch, None).tolist())
    assert decisions[-1] == [True, True]
    assert criteria.stopped_by == ["stop:\n\n", STOPPED_BY_EOS]
    assert criteria.finished_at[1] == rows[1].index(eos) + 1
    text_0 = [tokenizer.decode(rows[0][:k]) for k in range(1, width + 1)]
    assert criteria.finished_at[0] == next(k + 1 for k, t in enumerate(text_0) if "\n\n" in t)
    # monotone: once done, always done
    for before, after in zip(decisions, decisions[1:]):
        assert all(a or not b for b, a in zip(before, after))
    assert isinstance(StoppingCriteriaList([criteria]), StoppingCriteriaList)


def test_bad_arguments(models: dict[str, PreTrainedModel], tokenizer: PreTrainedTokenizerFast) -> None:
    model = models["llama"]
    with pytest.raises(ValueError, match="batch_size"):
        generate_greedy(model, tokenizer, PROMPTS, batch_size=0, max_new_tokens=4, stop_sequences=[])
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_greedy(model, tokenizer, PROMPTS, batch_size=2, max_new_tokens=0, stop_sequences=[])
    with pytest.raises(ValueError, match="stop_sequences"):
        generate_greedy(model, tokenizer, PROMPTS, batch_size=2, max_new_tokens=4, stop_sequences=[""])
    lengths = [len(tokenizer(p)["input_ids"]) for p in PROMPTS]
    longest = max(range(len(PROMPTS)), key=lengths.__getitem__)
    too_many = 512 - lengths[longest] + 1  # only the longest prompt overflows the 512-token context
    with pytest.raises(ValueError, match=f"prompt {longest} has {lengths[longest]} tokens.*context length 512"):
        generate_greedy(model, tokenizer, PROMPTS, batch_size=2, max_new_tokens=too_many, stop_sequences=[])
    assert generate_greedy(model, tokenizer, [], batch_size=2, max_new_tokens=4, stop_sequences=[]) == []


def test_model_generation_config_does_not_alter_greedy(tokenizer: PreTrainedTokenizerFast) -> None:
    """A hub model's generation_config (penalties, sampling, banned n-grams) must not leak into pure greedy."""
    model = build_tiny_model("llama", tokenizer, seed=4)
    plain = generate_greedy(model, tokenizer, PROMPTS, batch_size=3, max_new_tokens=16, stop_sequences=[])
    config = model.generation_config
    config.repetition_penalty = 50.0
    config.no_repeat_ngram_size = 1
    config.do_sample = True
    config.temperature = 0.3
    # the settings are live: plain generate() with the model's config now gives different tokens
    encoded = tokenizer(PROMPTS[0], return_tensors="pt")
    with torch.inference_mode():
        penalised = model.generate(**encoded, max_new_tokens=16, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert penalised[0, encoded["input_ids"].shape[1] :].tolist() != list(plain[0].token_ids)
    again = generate_greedy(model, tokenizer, PROMPTS, batch_size=3, max_new_tokens=16, stop_sequences=[])
    assert again == plain
    assert model.generation_config is config and config.repetition_penalty == 50.0  # restored afterwards


@pytest.mark.parametrize("architecture", ["mamba", "mamba2"])
def test_state_space_models_batched_equals_unbatched(architecture: str, tokenizer: PreTrainedTokenizerFast) -> None:
    """Mamba / Mamba2 zero the padded positions, so left-padded batches are exact for them too."""
    from transformers import Mamba2Config, Mamba2ForCausalLM, MambaConfig, MambaForCausalLM

    special = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
               "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    torch.manual_seed(5)
    if architecture == "mamba":
        model = MambaForCausalLM(MambaConfig(hidden_size=64, num_hidden_layers=2, state_size=8, initializer_range=0.2, **special))
    else:
        model = Mamba2ForCausalLM(Mamba2Config(hidden_size=64, num_hidden_layers=2, state_size=8, head_dim=16, num_heads=8,
                                               n_groups=1, expand=2, chunk_size=16, initializer_range=0.2, **special))
    model.eval()
    prompts = PROMPTS[:4]
    batched = generate_greedy(model, tokenizer, prompts, batch_size=4, max_new_tokens=10, stop_sequences=[])
    for prompt, generation in zip(prompts, batched):
        assert list(generation.token_ids) == unbatched_reference(model, tokenizer, prompt, 10)


@pytest.mark.parametrize("clean_up", [False, True])
def test_batch_decoder_equals_batch_decode(tokenizer: PreTrainedTokenizerFast, clean_up: bool) -> None:
    """The fast stop-check decoder gives exactly ``batch_decode(skip_special_tokens=True)``."""
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(0, len(tokenizer), (40, 12), generator=generator).tolist()  # specials, partial UTF-8, ...
    rows.append(tokenizer(" 3 , 4 . \n\nQuestion: é!", add_special_tokens=False)["input_ids"])
    rows.append([])
    tokenizer.clean_up_tokenization_spaces = clean_up
    try:
        assert batch_decoder(tokenizer)(rows) == tokenizer.batch_decode(rows, skip_special_tokens=True)
    finally:
        tokenizer.clean_up_tokenization_spaces = False


def test_pruned_engine_drops_finished_rows(models: dict[str, PreTrainedModel], tokenizer: PreTrainedTokenizerFast) -> None:
    """Once a row stops, later forward passes run on fewer rows; ``generate`` keeps the full batch to the end."""
    model = models["llama"]
    free = generate_greedy(model, tokenizer, PROMPTS, batch_size=6, max_new_tokens=MAX_NEW, stop_sequences=[])
    # end row 0 early with an extra EOS id taken from its own output
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, free[0].token_ids[2]]
    batch_sizes: dict[str, list[int]] = {}
    for engine in ("pruned", "generate"):
        sizes: list[int] = []
        handle = model.model.register_forward_hook(lambda module, args, kwargs, out: sizes.append(out[0].shape[0]), with_kwargs=True)
        try:
            result = generate_greedy(
                model, tokenizer, PROMPTS, batch_size=6, max_new_tokens=MAX_NEW, stop_sequences=[], engine=engine
            )
        finally:
            handle.remove()
        batch_sizes[engine] = sizes
        assert result[0].stopped_by == STOPPED_BY_EOS and result[0].n_generated_tokens <= 3
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    assert batch_sizes["pruned"][0] == 6 and min(batch_sizes["pruned"]) < 6
    assert set(batch_sizes["generate"]) == {6}


def test_engine_choice(models: dict[str, PreTrainedModel], tokenizer: PreTrainedTokenizerFast) -> None:
    from transformers import MambaConfig, MambaForCausalLM

    assert all(supports_row_pruning(m) for m in models.values())
    mamba = MambaForCausalLM(MambaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, state_size=4))
    assert not supports_row_pruning(mamba)
    with pytest.raises(ValueError, match="engine 'pruned' needs .* MambaForCausalLM"):
        generate_greedy(mamba, tokenizer, PROMPTS, batch_size=2, max_new_tokens=2, stop_sequences=[], engine="pruned")
    with pytest.raises(ValueError, match="engine must be one of"):
        generate_greedy(models["llama"], tokenizer, PROMPTS, batch_size=2, max_new_tokens=2, stop_sequences=[], engine="fast")
